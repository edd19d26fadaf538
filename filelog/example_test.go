package filelog_test

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/snail-log/snail/filelog"
)

// A File takes whole batches of entries, each with one write(); here it
// rotates past 10 MiB or at midnight, keeps 7 backups compressed with
// zstd, and follows its path when an operator moves or deletes the file.
// A sink.Writer is what usually gives it batches (snail.OpenFile).
func ExampleOpen() {
	dir, err := os.MkdirTemp("", "filelog-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "app.log")

	f, err := filelog.Open(path,
		filelog.WithMaxSize(10<<20), filelog.WithRotateEvery(24*time.Hour),
		filelog.WithMaxBackups(7), filelog.WithCompression(filelog.Zstd),
		filelog.WithFollowPath(time.Second))
	if err != nil {
		fmt.Println(err) // a missing directory or a bad option, with the path
		return
	}
	batch := []byte("{\"msg\":\"one\"}\n{\"msg\":\"two\"}\n")
	if err := f.WriteBatch(batch, 2); err != nil {
		fmt.Println(err)
	}
	if err := f.Close(); err != nil {
		fmt.Println(err)
	}
	b, _ := os.ReadFile(path)
	fmt.Print(string(b))
	fmt.Println(f.Stats().Writes, "write")
	// Output:
	// {"msg":"one"}
	// {"msg":"two"}
	// 1 write
}
