import Metrics
import Prometheus
import Synchronization

/// The process-wide Prometheus registry behind swift-metrics. swift-metrics allows one
/// bootstrap per process, so it happens once, on first use.
public enum SwitchboardMetrics {
    private static let state = Mutex<PrometheusCollectorRegistry?>(nil)

    public static var registry: PrometheusCollectorRegistry {
        state.withLock { s in
            if let r = s { return r }
            let r = PrometheusCollectorRegistry()
            var factory = PrometheusMetricsFactory(registry: r)
            factory.defaultDurationHistogramBuckets = [
                .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25),
                .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(5), .seconds(30),
            ]
            // Events per ingest commit (group commit): 1 at a trickle, up to 512 in a burst.
            factory.valueHistogramBuckets["switchboard_ingest_batch_events"] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
            MetricsSystem.bootstrap(factory)
            s = r
            return r
        }
    }

    public static func text() -> String { registry.emitToString() }
}
