package opslog

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/platform/telemetry"
)

type metrics struct {
	written     prometheus.Counter
	duplicates  prometheus.Counter
	invalid     prometheus.Counter
	writeErrors prometheus.Counter
	batch       prometheus.Histogram
}

// newMetrics registers the ops log's collectors on reg (none when nil); a service restarted in
// the same process keeps counting on those already registered.
func newMetrics(reg prometheus.Registerer) *metrics {
	return &metrics{
		written:     telemetry.Counter(reg, "sluice_opslog_events_written_total", "Ops events written to datasources_ops_log."),
		duplicates:  telemetry.Counter(reg, "sluice_opslog_events_duplicate_total", "Ops events received again and not written again."),
		invalid:     telemetry.Counter(reg, "sluice_opslog_events_invalid_total", "Stream messages that are not ops events (terminated)."),
		writeErrors: telemetry.Counter(reg, "sluice_opslog_write_errors_total", "Failed attempts to write a batch (retried)."),
		batch: telemetry.Register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "sluice_opslog_batch_seconds", Help: "Time to write one batch, retries included.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		})),
	}
}
