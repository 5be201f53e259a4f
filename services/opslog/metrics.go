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

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		written: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_opslog_events_written_total", Help: "Ops events written to datasources_ops_log.",
		}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_opslog_events_duplicate_total", Help: "Ops events received again and not written again.",
		}),
		invalid: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_opslog_events_invalid_total", Help: "Stream messages that are not ops events (terminated).",
		}),
		writeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_opslog_write_errors_total", Help: "Failed attempts to write a batch (retried).",
		}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "sluice_opslog_batch_seconds", Help: "Time to write one batch, retries included.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}),
	}
	if reg == nil {
		return m
	}
	m.written = telemetry.Register(reg, m.written)
	m.duplicates = telemetry.Register(reg, m.duplicates)
	m.invalid = telemetry.Register(reg, m.invalid)
	m.writeErrors = telemetry.Register(reg, m.writeErrors)
	m.batch = telemetry.Register(reg, m.batch)
	return m
}
