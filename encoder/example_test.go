package encoder_test

import (
	"fmt"

	"github.com/snail-log/snail/encoder"
)

// A batch travels as a frame; the receiver validates and decodes it.
func Example() {
	enc, _ := encoder.NewEncoder()
	defer enc.Close()
	dec, _ := encoder.NewDecoder(encoder.WithMaxFrameSize(1 << 20))
	defer dec.Close()

	batch := []byte("{\"msg\":\"a\"}\n{\"msg\":\"b\"}\n")
	frame, err := enc.AppendBatch(nil, encoder.Batch{Stream: 7, Seq: 1, Entries: 2}, batch, encoder.Zstd)
	if err != nil {
		fmt.Println(err)
		return
	}
	f, n, err := dec.Decode(frame, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(n == len(frame), f.Kind, f.Stream, f.Seq, f.Entries)
	fmt.Print(string(f.Payload))

	ack := encoder.AppendAck(nil, 7, 1, 1, encoder.StatusOK, "")
	a, _, _ := dec.Decode(ack, nil)
	fmt.Println(a.Kind, a.Seq, a.LastSeq, a.Status)
	// Output:
	// true batch 7 1 2
	// {"msg":"a"}
	// {"msg":"b"}
	// ack 1 1 ok
}
