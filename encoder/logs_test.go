package encoder

import (
	"math/rand/v2"
	"strconv"
)

// logBatch returns about size bytes of realistic JSON log lines, shaped like
// zap's production encoder output, with varying values (fixed seed).
func logBatch(size int, seed uint64) (batch []byte, entries int) {
	r := rand.New(rand.NewPCG(seed, 42))
	levels := []string{"debug", "info", "info", "info", "warn", "error"}
	msgs := []string{"request completed", "cache miss", "user logged in", "retrying upstream call",
		"slow query", "connection reset by peer", "payment authorised", "job finished"}
	methods := []string{"GET", "POST", "PUT", "DELETE"}
	paths := []string{"/api/v1/users/", "/api/v1/orders/", "/healthz", "/api/v2/search?q=", "/static/app.js?v="}
	callers := []string{"server/handler.go:142", "store/query.go:88", "auth/session.go:51", "jobs/worker.go:230"}
	ts := 1764115200.0
	for len(batch) < size {
		ts += r.Float64() / 1000
		batch = append(batch, `{"level":"`...)
		batch = append(batch, levels[r.IntN(len(levels))]...)
		batch = append(batch, `","ts":`...)
		batch = strconv.AppendFloat(batch, ts, 'f', 6, 64)
		batch = append(batch, `,"caller":"`...)
		batch = append(batch, callers[r.IntN(len(callers))]...)
		batch = append(batch, `","msg":"`...)
		batch = append(batch, msgs[r.IntN(len(msgs))]...)
		batch = append(batch, `","method":"`...)
		batch = append(batch, methods[r.IntN(len(methods))]...)
		batch = append(batch, `","path":"`...)
		batch = append(batch, paths[r.IntN(len(paths))]...)
		batch = strconv.AppendUint(batch, r.Uint64N(1_000_000), 10)
		batch = append(batch, `","status":`...)
		batch = strconv.AppendInt(batch, int64([]int{200, 200, 200, 201, 204, 304, 404, 500}[r.IntN(8)]), 10)
		batch = append(batch, `,"latency_ms":`...)
		batch = strconv.AppendFloat(batch, r.ExpFloat64()*20, 'f', 3, 64)
		batch = append(batch, `,"request_id":"`...)
		batch = strconv.AppendUint(batch, r.Uint64(), 16)
		batch = strconv.AppendUint(batch, r.Uint64()>>16, 16)
		batch = append(batch, `","user_id":`...)
		batch = strconv.AppendUint(batch, r.Uint64N(50_000), 10)
		batch = append(batch, "}\n"...)
		entries++
	}
	return batch, entries
}
