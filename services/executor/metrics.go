package executor

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
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
	m.steps = register(reg, m.steps)
	m.stepSeconds = register(reg, m.stepSeconds)
	m.redelivered = register(reg, m.redelivered)
	return m
}

// register registers c, or returns the collector already registered under its name (a
// service restarted in the same process).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
	}
	return c
}
