package ingest

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/platform/telemetry"
)

type metrics struct {
	requests    *prometheus.CounterVec
	rows        prometheus.Counter
	quarantined prometheus.Counter
	written     prometheus.Counter
	batches     prometheus.Counter
	writeErrors prometheus.Counter
	batchTime   prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_ingest_requests_total", Help: "Append requests by HTTP status."}, []string{"code"}),
		rows:        prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_ingest_rows_accepted_total", Help: "Rows accepted for Data Sources."}),
		quarantined: prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_ingest_rows_quarantined_total", Help: "Rows accepted for quarantine."}),
		written:     prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_ingest_rows_written_total", Help: "Rows written to ClickHouse (Data Sources and quarantine)."}),
		batches:     prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_ingest_batches_total", Help: "Batches committed."}),
		writeErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_ingest_write_errors_total", Help: "Failed insert attempts (retried)."}),
		batchTime:   prometheus.NewHistogram(prometheus.HistogramOpts{Name: "sluice_ingest_batch_seconds", Help: "Time to write one batch.", Buckets: prometheus.DefBuckets}),
	}
	// A service restarted in the same process keeps counting on the collectors registered.
	m.requests = telemetry.Register(reg, m.requests)
	m.rows = telemetry.Register(reg, m.rows)
	m.quarantined = telemetry.Register(reg, m.quarantined)
	m.written = telemetry.Register(reg, m.written)
	m.batches = telemetry.Register(reg, m.batches)
	m.writeErrors = telemetry.Register(reg, m.writeErrors)
	m.batchTime = telemetry.Register(reg, m.batchTime)
	return m
}
