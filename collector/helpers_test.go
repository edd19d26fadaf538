package collector

import (
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/snail-log/snail/internal/testnet"
)

func httpGet(url string) (string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// reports gathers what a client reports to its error handler (add).
type reports struct {
	mu   sync.Mutex
	errs []string
}

func (r *reports) add(err error) {
	r.mu.Lock()
	r.errs = append(r.errs, err.Error())
	r.mu.Unlock()
}

// list returns the reports so far.
func (r *reports) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.errs)
}

// has reports whether a report holds every one of subs.
func (r *reports) has(subs ...string) bool {
	return slices.ContainsFunc(r.list(), func(e string) bool {
		for _, s := range subs {
			if !strings.Contains(e, s) {
				return false
			}
		}
		return true
	})
}

// unusedAddr returns a loopback address nobody listens on, that refuses
// connections until a server of the test takes it (listenAt): a collector
// down when its clients start.
func unusedAddr(t *testing.T) string {
	t.Helper()
	return testnet.Reserve(t)
}

// listenAt listens on addr: an address of unusedAddr's is taken from its
// reservation.
func listenAt(t *testing.T, addr string) net.Listener {
	t.Helper()
	return testnet.Listen(t, addr)
}
