package netlog

import "errors"

// Errors of the netlog core and the log client. They are returned wrapped
// with detail; test for them with errors.Is.
var (
	// ErrClosed is returned by calls on a Client, Server or Stream after
	// Close or Shutdown.
	ErrClosed = errors.New("netlog: closed")
	// ErrServerClosed is returned by Server.Serve after Shutdown or Close,
	// like http.ErrServerClosed.
	ErrServerClosed = errors.New("netlog: server closed")
	// ErrUnavailable is returned while no connection has been possible for
	// longer than the configured report delay: the requests stay queued.
	ErrUnavailable = errors.New("netlog: peer unavailable")
	// ErrRejected wraps a refusal by the peer: a handshake it did not accept
	// or a request it answered with an error status.
	ErrRejected = errors.New("netlog: rejected")
	// ErrProtocol wraps a violation of the log protocol by the peer.
	ErrProtocol = errors.New("netlog: protocol error")
	// ErrReentry is returned by a Client's Send, Wait, Shutdown and Close
	// called from a response callback where they would wait for the
	// callback to return: Send past the room of the requests the callback
	// answers (see Send), Wait, Shutdown and Close always.
	ErrReentry = errors.New("netlog: called from a response callback, and would wait for it")
	// ErrNoRequest is returned by a ServerConn's ReadRequest, like io.EOF
	// a signal and not a failure, when it read a frame that carries no
	// request: a keep-alive ping. The Server then waits for the next
	// request under the idle timeout, as after an answered one; a codec
	// that read on instead would keep a quiet connection inside one
	// request, and the frame timeout would cut it.
	ErrNoRequest = errors.New("netlog: no request")
	// ErrInvalidOption wraps configuration errors.
	ErrInvalidOption = errors.New("netlog: invalid option")
)
