//go:build !unix

package filelog

// childMain: the child processes of the tests run on Unix only.
func childMain() bool { return false }
