package netlog_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/snail-log/snail/encoder"
	"github.com/snail-log/snail/netlog"
	"github.com/snail-log/snail/sink"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Ship zap's entries to a collector (or two, for failover), compressed with
// zstd. Dial returns at once; the connection is made in the background.
func ExampleDial() {
	stream, err := netlog.Dial("collector-a:7777,collector-b:7777",
		netlog.WithStreamName("checkout"), netlog.WithCompression(encoder.Zstd), netlog.WithToken("s3cret"))
	if err != nil {
		panic(err) // configuration errors only
	}
	w, err := sink.New(stream, sink.WithDropBelow(sink.WarnLevel))
	if err != nil {
		panic(err)
	}
	defer w.Close() // waits for the acks, up to the drain timeout

	logger := zap.New(sink.NewZapCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), w, zap.InfoLevel))
	logger.Info("order paid", zap.String("order", "A-17"))
}

// A collector that refuses this client for good (a wrong token, TLS on one
// side only, a certificate that does not verify) is not waited for: Sync
// returns at once, and Permanent tells that from an outage, through which
// the entries stay queued for the collector's return.
func ExamplePermanent() {
	stream, err := netlog.Dial("collector:7777", netlog.WithStreamName("checkout"), netlog.WithToken("s3cret"))
	if err != nil {
		panic(err) // configuration errors only
	}
	w, err := sink.New(stream)
	if err != nil {
		panic(err)
	}
	defer w.Close()
	fmt.Fprintln(w, `{"level":"info","msg":"order paid"}`)
	if err := w.Sync(); netlog.Permanent(err) {
		fmt.Println("the collector refuses this client; check its token and TLS settings:", err)
	}
}

// The request-response core carries any protocol given its codecs. Here a
// toy one: the client sends "id word" lines, the server answers "id WORD".
// Many goroutines may Send at once; their requests leave together in one
// write, and each done gets its own answer, matched by id.
func ExampleNewServer() {
	srv, err := netlog.NewServer[upperReq, upperResp](upperServer{})
	if err != nil {
		panic(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go srv.Serve(l)

	c, err := netlog.NewClient[string, string](upperClient{}, netlog.WithAddrs(l.Addr().String()))
	if err != nil {
		panic(err)
	}
	words := []string{"fan", "in", "fan", "out"}
	answers := make([]string, len(words))
	var wg sync.WaitGroup
	for i, w := range words {
		wg.Go(func() {
			err := c.Send(context.Background(), w, len(w), func(resp string, err error) {
				answers[i] = resp // or err: ErrClosed, a rejection
			})
			if err != nil {
				fmt.Println(err)
			}
		})
	}
	wg.Wait()
	if err := c.Wait(context.Background()); err != nil { // every request answered
		fmt.Println(err)
	}
	fmt.Println(answers)
	c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(ctx)
	// Output: [FAN IN FAN OUT]
}

// upperClient is the client half of the toy protocol.
type upperClient struct{}

func (upperClient) Handshake(conn net.Conn) error {
	if _, err := io.WriteString(conn, "UPPER 1\n"); err != nil {
		return err
	}
	line, err := bufio.NewReader(io.LimitReader(conn, 3)).ReadString('\n')
	if err != nil || line != "OK\n" {
		return fmt.Errorf("handshake: %q, %v", line, err)
	}
	return nil
}

func (upperClient) AppendRequest(dst []byte, id uint64, word string) ([]byte, []byte, error) {
	return fmt.Appendf(dst, "%d %s\n", id, word), nil, nil
}

func (upperClient) AppendPing(dst []byte) []byte { return append(dst, "0\n"...) }

func (upperClient) NewResponseReader(r io.Reader) netlog.ResponseReader[string] {
	return upperReader{bufio.NewReader(r)}
}

type upperReader struct{ r *bufio.Reader }

func (u upperReader) ReadResponse() (first, last uint64, resp string, err error) {
	id, word, err := readLine(u.r)
	return id, id, word, err
}

// readLine reads an "id word" line.
func readLine(r *bufio.Reader) (uint64, string, error) {
	line, err := r.ReadSlice('\n')
	if err != nil {
		return 0, "", err
	}
	idText, word, _ := strings.Cut(strings.TrimSuffix(string(line), "\n"), " ")
	id, err := strconv.ParseUint(idText, 10, 64)
	return id, word, err
}

// upperServer is the server half.
type upperServer struct{}

type upperReq struct {
	id   uint64
	word string
}

type upperResp = upperReq

func (upperServer) Accept(conn net.Conn, r *bufio.Reader) (netlog.ServerConn[upperReq, upperResp], error) {
	if line, err := r.ReadString('\n'); err != nil || line != "UPPER 1\n" {
		return nil, fmt.Errorf("not a client of this protocol: %q, %v", line, err)
	}
	if _, err := io.WriteString(conn, "OK\n"); err != nil {
		return nil, err
	}
	return &upperConn{r: r}, nil
}

type upperConn struct{ r *bufio.Reader }

func (c *upperConn) ReadRequest() (upperReq, error) {
	id, word, err := readLine(c.r)
	if err == nil && id == 0 {
		return upperReq{}, netlog.ErrNoRequest // a ping
	}
	return upperReq{id, word}, err
}

func (c *upperConn) Serve(req upperReq, reply func(upperResp)) {
	reply(upperResp{req.id, strings.ToUpper(req.word)})
}

func (c *upperConn) AppendResponses(dst []byte, resps []upperResp) []byte {
	for _, r := range resps {
		dst = fmt.Appendf(dst, "%d %s\n", r.id, r.word)
	}
	return dst
}

func (c *upperConn) Close(error) {}
