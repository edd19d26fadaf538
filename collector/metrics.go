package collector

import (
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
)

// metrics are a collector's Prometheus metrics, in a registry of its own
// (several collectors may live in one process, as in tests).
type metrics struct {
	reg                               *prometheus.Registry
	conns, failing                    prometheus.Gauge
	connsTotal, frames, entries, acks prometheus.Counter
	duplicates, bytesIn, bytesWritten prometheus.Counter
	writeErrors                       prometheus.Counter
	rejects                           *prometheus.CounterVec
	writeSeconds, fsyncSeconds        prometheus.Histogram

	// Per stream: what was written, and when last, so that an operator
	// sees which application logs how much, and which went quiet.
	streamEntries, streamBytes *prometheus.CounterVec
	streamLast                 *prometheus.GaugeVec
	smu                        sync.Mutex
	streams                    map[string]*streamMetrics // at most maxStreamSeries
	other                      *streamMetrics            // the streams past them
}

// maxStreamSeries bounds the streams with series of their own: stream
// names come from the clients, and a series for every name ever seen would
// grow the metrics (and the memory of whatever scrapes them) without
// bound. The streams past it share the series of otherStreams. A variable
// for tests.
var maxStreamSeries = 1000

// otherStreams labels the series of the streams past maxStreamSeries; no
// stream has this name (stream names start with a letter or a digit).
const otherStreams = "_other"

// streamMetrics are one stream's series.
type streamMetrics struct {
	entries, bytes prometheus.Counter
	lastWrite      prometheus.Gauge
}

// stream returns the series of stream name. They outlive its output file,
// which is closed when idle, so that its counters never go back.
func (m *metrics) stream(name string) *streamMetrics {
	m.smu.Lock()
	defer m.smu.Unlock()
	if s := m.streams[name]; s != nil {
		return s
	}
	label := name
	if len(m.streams) >= maxStreamSeries {
		if m.other != nil {
			return m.other
		}
		label = otherStreams
	}
	s := &streamMetrics{
		entries:   m.streamEntries.WithLabelValues(label),
		bytes:     m.streamBytes.WithLabelValues(label),
		lastWrite: m.streamLast.WithLabelValues(label),
	}
	if label == otherStreams {
		m.other = s
	} else {
		m.streams[name] = s
	}
	return s
}

// written counts a batch of entries and bytes written to the stream.
func (s *streamMetrics) written(entries, bytes int) {
	s.entries.Add(float64(entries))
	s.bytes.Add(float64(bytes))
	s.lastWrite.SetToCurrentTime()
}

func newMetrics() *metrics {
	const ns = "snail_collector"
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: name, Help: help})
	}
	lat := prometheus.ExponentialBuckets(10e-6, 4, 10) // 10µs .. 2.6s
	m := &metrics{
		reg:   prometheus.NewRegistry(),
		conns: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "connections", Help: "Client connections open (after the handshake)."}),
		failing: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "failing_outputs",
			Help: "Output files whose write is failing and being retried now (a full disk): /readyz answers 503 meanwhile."}),
		connsTotal:   counter("connections_total", "Client connections accepted (after the handshake)."),
		frames:       counter("frames_total", "Batch frames received and checked."),
		entries:      counter("entries_total", "Log entries written."),
		acks:         counter("acks_total", "Ack frames sent (one may ack a range of batches)."),
		duplicates:   counter("duplicates_total", "Batch frames received again after a reconnect and not written again."),
		bytesIn:      counter("received_bytes_total", "Bytes of batch frames received, as sent."),
		bytesWritten: counter("written_bytes_total", "Bytes written to output files."),
		writeErrors:  counter("write_errors_total", "Failed writes or fsyncs of output files (retried)."),
		rejects: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "rejects_total",
			Help: "Connections closed on an error, by reason."}, []string{"reason"}),
		writeSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "write_seconds",
			Help: "Time to write one batch to its file.", Buckets: lat}),
		fsyncSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "fsync_seconds",
			Help: "Time to fsync an output file.", Buckets: lat}),
		streamEntries: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "stream_entries_total",
			Help: "Log entries written, by stream (the first 1000 streams; the rest under stream=\"_other\")."}, []string{"stream"}),
		streamBytes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "stream_written_bytes_total",
			Help: "Bytes written to output files, by stream."}, []string{"stream"}),
		streamLast: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "stream_last_write_timestamp_seconds",
			Help: "When a batch of the stream was last written (Unix time): alert on streams gone quiet."}, []string{"stream"}),
		streams: map[string]*streamMetrics{},
	}
	for _, r := range rejectReasons {
		m.rejects.WithLabelValues(r)
	}
	m.reg.MustRegister(m.conns, m.failing, m.connsTotal, m.frames, m.entries, m.acks, m.duplicates, m.bytesIn,
		m.bytesWritten, m.writeErrors, m.rejects, m.writeSeconds, m.fsyncSeconds,
		m.streamEntries, m.streamBytes, m.streamLast,
		collectors.NewGoCollector(), collectors.NewBuildInfoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

func value(c prometheus.Metric) uint64 {
	var d dto.Metric
	if err := c.Write(&d); err != nil {
		return 0
	}
	switch {
	case d.Counter != nil:
		return uint64(d.Counter.GetValue())
	case d.Gauge != nil:
		return uint64(d.Gauge.GetValue())
	}
	return 0
}

func (m *metrics) stats() Stats {
	s := Stats{
		Frames:     value(m.frames),
		Entries:    value(m.entries),
		Duplicates: value(m.duplicates),
		Acks:       value(m.acks),
		Rejects:    map[string]uint64{},
	}
	ch := make(chan prometheus.Metric, 64)
	go func() { m.rejects.Collect(ch); close(ch) }()
	for mt := range ch {
		var d dto.Metric
		if mt.Write(&d) == nil {
			for _, l := range d.Label {
				if l.GetName() == "reason" && d.Counter.GetValue() > 0 {
					s.Rejects[l.GetValue()] = uint64(d.Counter.GetValue())
				}
			}
		}
	}
	return s
}
