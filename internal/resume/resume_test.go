package resume

import (
	"testing"

	"go.uber.org/goleak"
)

func TestPoint(t *testing.T) {
	a, b := []byte("one\ntwo\nsix\n"), []byte("one\ntwo\nten\n")
	var p Point
	if got := p.From(a); got != 0 {
		t.Fatalf("From with nothing saved = %d", got)
	}
	p.Save(a, 4)
	if got := p.From(a); got != 4 {
		t.Fatalf("From(the same batch) = %d, want 4", got)
	}
	if got := p.From(a); got != 0 {
		t.Fatalf("From after From = %d: the point is forgotten once used", got)
	}
	p.Save(a, 8)
	if got := p.From(b); got != 8 {
		t.Fatalf("From(a batch with the same length and written part) = %d, want 8", got)
	}
	p.Save(a, 8)
	if got := p.From([]byte("xne\ntwo\nsix\n")); got != 0 {
		t.Fatalf("From(another batch) = %d, want 0", got)
	}
	p.Save(a, 8)
	if got := p.From(a[:11]); got != 0 {
		t.Fatalf("From(a shorter batch) = %d, want 0", got)
	}
	p.Save(a, 0)
	if got := p.From(a); got != 0 {
		t.Fatalf("From after Save(0) = %d, want 0", got)
	}
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
