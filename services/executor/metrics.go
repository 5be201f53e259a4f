package executor

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/platform/telemetry"
)

type metrics struct {
	// steps counts ended step attempts by result: committed, retried, failed, cancelled,
	// handed_back, skipped.
	steps *prometheus.CounterVec
	// stepSeconds is the run time of step attempts.
	stepSeconds prometheus.Histogram
	// redelivered counts steps received again after an attempt that did not end here or
	// elsewhere (a dead or drained executor, a lost acknowledgement).
	redelivered prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		steps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_executor_steps_total", Help: "Step attempts by result.",
		}, []string{"result"}),
		stepSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "sluice_executor_step_seconds", Help: "Run time of step attempts.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 12),
		}),
		redelivered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_executor_steps_redelivered_total", Help: "Steps received on a second or later delivery.",
		}),
	}
	if reg == nil {
		return m
	}
	m.steps = telemetry.Register(reg, m.steps)
	m.stepSeconds = telemetry.Register(reg, m.stepSeconds)
	m.redelivered = telemetry.Register(reg, m.redelivered)
	return m
}
