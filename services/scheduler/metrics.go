package scheduler

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/platform/telemetry"
)

type metrics struct {
	// created counts jobs created, by kind.
	created *prometheus.CounterVec
	// admitted counts limited jobs the leader released to the queue.
	admitted prometheus.Counter
	// requeued counts steps the leader queued again after finding them lost.
	requeued prometheus.Counter
	// leader is 1 while this replica leads the job system.
	leader prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		created: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_scheduler_jobs_created_total", Help: "Jobs created, by kind.",
		}, []string{"kind"}),
		admitted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_scheduler_jobs_admitted_total", Help: "Limited jobs admitted under their workspace's limit.",
		}),
		requeued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_scheduler_steps_requeued_total", Help: "Steps found neither done nor queued and queued again.",
		}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_scheduler_leader", Help: "1 while this replica leads the job system.",
		}),
	}
	if reg == nil {
		return m
	}
	m.created = telemetry.Register(reg, m.created)
	m.admitted = telemetry.Register(reg, m.admitted)
	m.requeued = telemetry.Register(reg, m.requeued)
	m.leader = telemetry.Register(reg, m.leader)
	return m
}
