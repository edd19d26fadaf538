package snail

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"github.com/snail-log/snail/sink"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// exitChild, in a child process started by TestLastEntryBeforeExit, logs
// 1000 entries and then one that ends the process, as SNAIL_EXIT_CHILD
// says, into the file SNAIL_EXIT_FILE, with a batch window long enough
// that only a flush at that entry can bring it to the file.
func exitChild() {
	how, path := os.Getenv("SNAIL_EXIT_CHILD"), os.Getenv("SNAIL_EXIT_FILE")
	if how == "" {
		return
	}
	if strings.HasPrefix(how, "zapurl") {
		cfg := zap.NewProductionConfig()
		cfg.Sampling = nil
		cfg.OutputPaths = []string{"snail://" + path + "?window=1h&maxsize=64MiB"}
		l, err := cfg.Build()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(9)
		}
		for i := range 1000 {
			l.Info("entry", zap.Int("i", i))
		}
		l.Fatal("last")
	}
	w, err := OpenFile(path, nil, sink.WithWindow(1<<40))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(9)
	}
	switch how {
	case "zap-fatal", "zap-panic":
		l := zap.New(sink.NewZapCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), w, zap.InfoLevel))
		for i := range 1000 {
			l.Info("entry", zap.Int("i", i))
		}
		if how == "zap-fatal" {
			l.Fatal("last")
		}
		l.Panic("last")
	case "zerolog-fatal", "zerolog-panic":
		l := zerolog.New(w)
		for i := range 1000 {
			l.Info().Int("i", i).Msg("entry")
		}
		if how == "zerolog-fatal" {
			l.Fatal().Msg("last")
		}
		l.Panic().Msg("last")
	case "slog-fatal":
		// slog has no fatal level; a program that exits after an entry
		// logs it at ERROR+4 or above (or closes the Writer first).
		l := slog.New(sink.NewSlogHandler(w, nil))
		for i := range 1000 {
			l.Info("entry", "i", i)
		}
		l.Log(context.Background(), slog.LevelError+4, "last")
		os.Exit(1)
	}
	os.Exit(8) // not reached
}

// TestLastEntryBeforeExit: the entry that ends the process (zap's Fatal and
// Panic, zerolog's Fatal and Panic, slog at ERROR+4 before os.Exit) is in
// the file, with every entry before it, although the batch window is
// hours long: snail writes it before the logger exits or panics.
func TestLastEntryBeforeExit(t *testing.T) {
	for _, how := range []string{"zap-fatal", "zap-panic", "zerolog-fatal", "zerolog-panic", "slog-fatal", "zapurl-fatal"} {
		t.Run(how, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "app.log")
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), "SNAIL_EXIT_CHILD="+how, "SNAIL_EXIT_FILE="+path)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			if code := cmd.ProcessState.ExitCode(); code != 1 && code != 2 {
				t.Fatalf("child: %v (want the exit of a fatal entry or a panic): %s", err, stderr.String())
			}
			b, _ := os.ReadFile(path)
			lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
			if len(lines) != 1001 || !strings.Contains(lines[1000], `"last"`) {
				t.Fatalf("the file holds %d lines (want 1001), the last %q", len(lines), lines[len(lines)-1])
			}
		})
	}
}
