//go:build !unix

package main

import "os"

// canWaitReadable reports whether waitReadable works here: not on this
// system, where a signal abandons a read in flight.
const canWaitReadable = false

func waitReadable(*os.File, <-chan struct{}) error { return nil }
