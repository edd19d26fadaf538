//go:build !unix

package netlog

import "errors"

// canReadFD is false where the Client does not read sockets itself: the
// reader goroutine reads alone and Poll does nothing.
const canReadFD = false

func readFD(uintptr, []byte) (int, error) { return 0, errors.ErrUnsupported }
