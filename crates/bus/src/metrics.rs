use prometheus::{
    CounterVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
};

/// Counters and histograms of everything that crosses the bus, labelled by topic only
/// (bounded cardinality).
#[derive(Clone)]
pub struct BusMetrics {
    pub consumed: IntCounterVec,
    pub produced: IntCounterVec,
    pub failed: IntCounterVec,
    pub dead_lettered: IntCounterVec,
    pub retries: IntCounterVec,
    pub processing_seconds: HistogramVec,
    /// Records behind the partition's end, per consumed partition (from librdkafka's
    /// statistics, so it costs no extra broker round trips).
    pub consumer_lag: IntGaugeVec,
    /// CPU time of the polls that handle consumed records, by topic: a service's CPU
    /// per record even when it shares a process with others.
    pub handler_cpu_seconds: CounterVec,
    /// Records handed to the handler together, by topic: small batches pay a transaction
    /// and a poll each, so this shows whether the consumers keep up with room to spare.
    pub batch_records: HistogramVec,
}

impl BusMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let counter = |name: &str, help: &str| {
            let c = IntCounterVec::new(Opts::new(name, help), &["topic"])?;
            registry.register(Box::new(c.clone()))?;
            Ok::<_, prometheus::Error>(c)
        };
        let processing_seconds = HistogramVec::new(
            HistogramOpts::new(
                "closeloop_event_processing_seconds",
                "Time from receiving a record to committing its offset.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
            ]),
            &["topic"],
        )?;
        registry.register(Box::new(processing_seconds.clone()))?;
        let consumer_lag = IntGaugeVec::new(
            Opts::new(
                "closeloop_consumer_lag",
                "Records not yet consumed, by topic, partition and consumer group.",
            ),
            &["topic", "partition", "group"],
        )?;
        registry.register(Box::new(consumer_lag.clone()))?;
        let handler_cpu_seconds = CounterVec::new(
            Opts::new(
                "closeloop_consumer_cpu_seconds_total",
                "CPU time spent handling consumed records (the handler's polls, on any thread), by topic.",
            ),
            &["topic"],
        )?;
        registry.register(Box::new(handler_cpu_seconds.clone()))?;
        let batch_records = HistogramVec::new(
            HistogramOpts::new(
                "closeloop_consumer_batch_records",
                "Records handled together in one batch, by topic.",
            )
            .buckets(vec![
                1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0,
            ]),
            &["topic"],
        )?;
        registry.register(Box::new(batch_records.clone()))?;
        Ok(Self {
            consumed: counter(
                "closeloop_events_consumed_total",
                "Records consumed and processed, by topic.",
            )?,
            produced: counter(
                "closeloop_events_produced_total",
                "Records acknowledged by the broker, by topic.",
            )?,
            failed: counter(
                "closeloop_events_failed_total",
                "Failed attempts to produce or handle a record, by topic.",
            )?,
            dead_lettered: counter(
                "closeloop_events_dead_lettered_total",
                "Records sent to the dead-letter topic, by original topic.",
            )?,
            retries: counter(
                "closeloop_event_retries_total",
                "Handler retries after a transient failure, by topic.",
            )?,
            processing_seconds,
            consumer_lag,
            handler_cpu_seconds,
            batch_records,
        })
    }

    /// Metrics registered nowhere: for tests and tools that do not export them.
    pub fn unregistered() -> Self {
        Self::register(&Registry::new()).expect("a fresh registry has no duplicates")
    }
}
