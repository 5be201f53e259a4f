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

// newMetrics registers the ingest service's collectors on reg (none when nil); a service
// restarted in the same process keeps counting on those already registered.
func newMetrics(reg prometheus.Registerer) *metrics {
	return &metrics{
		requests:    telemetry.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_ingest_requests_total", Help: "Append requests by HTTP status."}, []string{"code"})),
		rows:        telemetry.Counter(reg, "sluice_ingest_rows_accepted_total", "Rows accepted for Data Sources."),
		quarantined: telemetry.Counter(reg, "sluice_ingest_rows_quarantined_total", "Rows accepted for quarantine."),
		written:     telemetry.Counter(reg, "sluice_ingest_rows_written_total", "Rows written to ClickHouse (Data Sources and quarantine)."),
		batches:     telemetry.Counter(reg, "sluice_ingest_batches_total", "Batches committed."),
		writeErrors: telemetry.Counter(reg, "sluice_ingest_write_errors_total", "Failed insert attempts (retried)."),
		batchTime:   telemetry.Register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{Name: "sluice_ingest_batch_seconds", Help: "Time to write one batch.", Buckets: prometheus.DefBuckets})),
	}
}
