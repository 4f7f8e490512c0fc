import BouncerCore
import NIOConcurrencyHelpers
import NIOCore
import Prometheus

/// The gateway's Prometheus metrics, in one registry served by the admin listener
/// (`docs/metrics.md` lists them; a test checks that list against ``catalogue``).
///
/// Labels are bounded by the policy: resources are the policy's paths, a tool (prompt,
/// resource URI) is a label only when the policy names it (the matching pattern, exact or
/// glob; anything else is `other`), an MCP method only when the specification defines it.
/// Subjects, tokens and peers are never labels. Metric objects are made once per label set and
/// kept; a resource's request counters and histograms are resolved when the gateway is built
/// (``ResourceMetrics``, ``RequestCounters``), so the request path increments atomics and takes
/// one short lock per histogram.
public final class GatewayMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry

    /// Every metric: name, type and help, as `docs/metrics.md` documents them.
    public static let catalogue: [(name: String, type: String, help: String)] = [
        ("mcp_bouncer_build_info", "gauge", "Always 1; the version label says which build is running."),
        ("mcp_bouncer_requests_total", "counter", "Requests to protected resources by resource, MCP method, target (a policy pattern or other) and outcome (forwarded, denied, upstream_error, client_closed, connection_closed)."),
        ("mcp_bouncer_rejections_total", "counter", "Refusals and upstream failures by resource and stable reason code (missing_token, invalid_token.expired, insufficient_scope, upstream_unavailable, ...)."),
        ("mcp_bouncer_request_duration_seconds", "histogram", "Time from the request head to the end of the response, by resource."),
        ("mcp_bouncer_upstream_duration_seconds", "histogram", "Time from sending to the upstream to the end of its response, by resource."),
        ("mcp_bouncer_response_size_bytes", "histogram", "Response body bytes sent to the client, by resource."),
        ("mcp_bouncer_token_verifications_total", "counter", "Bearer token checks by result (valid, invalid, unavailable) and cache (hit, miss)."),
        ("mcp_bouncer_authorization_server_requests_total", "counter", "Calls to authorization servers (metadata, jwks, token, introspection) by purpose and outcome."),
        ("mcp_bouncer_authorization_server_request_duration_seconds", "histogram", "Duration of calls to authorization servers, by purpose."),
        ("mcp_bouncer_token_exchanges_total", "counter", "RFC 8693 token exchanges by result (ok, cached, refused, unavailable)."),
        ("mcp_bouncer_introspections_total", "counter", "RFC 7662 introspections by result (active, inactive, unavailable)."),
        ("mcp_bouncer_authorization_server_circuit_open", "gauge", "1 while calls to the authorization server fail fast after repeated failures, by issuer."),
        ("mcp_bouncer_authorization_server_up", "gauge", "0 after the authorization server's keys or metadata could not be loaded, 1 once they could, by issuer."),
        ("mcp_bouncer_open_connections", "gauge", "Client connections open now."),
        ("mcp_bouncer_connections_total", "counter", "Client connections accepted."),
        ("mcp_bouncer_connections_refused_total", "counter", "Client connections answered 503 and closed at once because limits.max_connections were open."),
        ("mcp_bouncer_open_streams", "gauge", "Responses being streamed to clients as text/event-stream now."),
        ("mcp_bouncer_upstream_idle_connections", "gauge", "Keep-alive connections to upstreams waiting in the pools."),
        ("mcp_bouncer_audit_records_total", "counter", "Audit records written (checkpoints included)."),
        ("mcp_bouncer_audit_records_dropped_total", "counter", "Audit records dropped because the queue was full (audit.on_overflow: drop)."),
        ("mcp_bouncer_audit_refused_total", "counter", "Requests refused with 503 because their audit record could not be queued (audit.on_overflow: refuse)."),
        ("mcp_bouncer_audit_queue_depth", "gauge", "Audit records waiting for the writer thread."),
        ("mcp_bouncer_audit_sink_up", "gauge", "1 while the audit sink accepts writes, 0 while it fails (disk full, file removed)."),
        ("mcp_bouncer_audit_sink_errors_total", "counter", "Failed writes, syncs and reopens of the audit sink."),
        ("mcp_bouncer_reloads_total", "counter", "Reloads by what (policy: SIGHUP or run --watch; tls_certificate) and result (ok, failed)."),
        ("mcp_bouncer_server_requests_total", "counter", "Server-to-client requests (elicitation/create, sampling/createMessage, roots/list, on SSE streams or in input_required results) judged by the elicitation and sampling guard, by resource, method and outcome (passed, or why blocked: credential_field, url_origin_not_allowed, rate_limited, sampling_denied, roots_denied, malformed)."),
        ("mcp_bouncer_bridge_events_total", "counter", "What the protocol bridge did for 2026-07-28 clients of legacy upstreams, by resource and event: session_opened, session_lost (the upstream answered 404), session_ended (idle, evicted), parked (a call waits for the client's input), resumed, resume_refused (a requestState tampered, expired, foreign, replayed or for another replica), expired (a parked call the client abandoned, cancelled upstream), listening and listen_ended (a subscriptions/listen stream)."),
        ("mcp_bouncer_token_bindings_total", "counter", "Tokens by how their binding was checked (stage 4b): bearer, dpop, mtls when accepted, else the refusal (bound_token_as_bearer, not_dpop_bound, certificate_mismatch, bearer_not_accepted, dpop.<why>: bad_signature, wrong_htu, stale_iat, replayed, replay_cache_full, nonce_required...)."),
        ("mcp_bouncer_upstream_era", "gauge", "1 for the MCP era each upstream is known to speak (legacy, modern, or unknown until server/discover says), by resource and era; 0 for the others."),
        ("mcp_bouncer_tool_definition_changes_total", "counter", "Tool definitions seen in tools/list results that do not match their pins (tool_pins), by resource, finding (changed, unpinned) and action (block, alert); counted once per tool and definition."),
    ]

    static let durationBuckets: [Duration] = [
        .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
        .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10), .seconds(30), .seconds(60),
    ]
    static let sizeBuckets: [Double] = [256, 1024, 4096, 16_384, 65_536, 262_144, 1_048_576, 4_194_304, 16_777_216, 67_108_864]

    /// Methods the MCP specification defines (2024-11-05 to 2026-07-28): others count as `other`.
    static let knownMethods: Set<String> = [
        "initialize", "ping", "server/discover", "tools/list", "tools/call", "prompts/list", "prompts/get", "resources/list", "resources/read",
        "resources/templates/list", "resources/subscribe", "resources/unsubscribe", "logging/setLevel", "completion/complete",
        "notifications/initialized", "notifications/cancelled", "notifications/progress", "notifications/roots/list_changed",
        "tasks/get", "tasks/list", "tasks/cancel", "tasks/result",
    ]

    public let openConnections: Gauge
    public let connections: Counter
    public let connectionsRefused: Counter
    public let openStreams: Gauge
    public let upstreamIdleConnections: Gauge
    public let auditRecords: Counter
    public let auditDropped: Counter
    public let auditRefused: Counter
    public let auditQueueDepth: Gauge
    public let auditSinkUp: Gauge
    public let auditSinkErrors: Counter
    /// By result and cache (hit, miss): made up front, they count every request.
    private let verifications: [String: (hit: Counter, miss: Counter)]
    private let exchanges: [String: Counter]

    private let labelled = NIOLockedValueBox([LabelsKey: Counter]())
    private let fetchDurations = NIOLockedValueBox([String: DurationHistogram]())

    private struct LabelsKey: Hashable {
        var name: String
        var labels: [String]
    }

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry(), version: String = MCPBouncerVersion.current) {
        self.registry = registry
        func gauge(_ name: String) -> Gauge { registry.makeGauge(descriptor: Self.descriptor(name)) }
        func counter(_ name: String) -> Counter { registry.makeCounter(descriptor: Self.descriptor(name)) }
        registry.makeGauge(descriptor: Self.descriptor("mcp_bouncer_build_info"), labels: [("version", version)]).set(Int64(1))
        self.openConnections = gauge("mcp_bouncer_open_connections")
        self.connections = counter("mcp_bouncer_connections_total")
        self.openStreams = gauge("mcp_bouncer_open_streams")
        self.upstreamIdleConnections = gauge("mcp_bouncer_upstream_idle_connections")
        self.auditRecords = counter("mcp_bouncer_audit_records_total")
        self.auditDropped = counter("mcp_bouncer_audit_records_dropped_total")
        self.auditRefused = counter("mcp_bouncer_audit_refused_total")
        self.connectionsRefused = counter("mcp_bouncer_connections_refused_total")
        self.auditQueueDepth = gauge("mcp_bouncer_audit_queue_depth")
        self.auditSinkUp = gauge("mcp_bouncer_audit_sink_up")
        self.auditSinkErrors = counter("mcp_bouncer_audit_sink_errors_total")
        var verifications: [String: (hit: Counter, miss: Counter)] = [:]
        for result in ["valid", "invalid", "unavailable"] {
            let name = Self.descriptor("mcp_bouncer_token_verifications_total")
            verifications[result] = (
                registry.makeCounter(descriptor: name, labels: [("result", result), ("cache", "hit")]),
                registry.makeCounter(descriptor: name, labels: [("result", result), ("cache", "miss")])
            )
        }
        self.verifications = verifications
        var exchanges: [String: Counter] = [:]
        for result in ["ok", "cached", "refused", "unavailable"] {
            exchanges[result] = registry.makeCounter(descriptor: Self.descriptor("mcp_bouncer_token_exchanges_total"), labels: [("result", result)])
        }
        self.exchanges = exchanges
    }

    static func descriptor(_ name: String) -> MetricNameDescriptor {
        let help = Self.catalogue.first { $0.name == name }?.help
        precondition(help != nil, "\(name) is not in GatewayMetrics.catalogue")
        return MetricNameDescriptor(metricName: name, unitName: "", helpText: help ?? "")
    }

    /// The exposition text (`/metrics`).
    public func exposition() -> [UInt8] {
        self.registry.emitToBuffer()
    }

    // MARK: Per resource

    /// A resource's histograms and request counters, made once when the gateway is built.
    public struct ResourceMetrics: Sendable {
        public let requests: RequestCounters
        public let requestDuration: DurationHistogram
        public let upstreamDuration: DurationHistogram
        public let responseSize: ValueHistogram
    }

    public func resource(_ resource: ResourcePolicy) -> ResourceMetrics {
        let labels = [("resource", resource.path)]
        return ResourceMetrics(
            requests: RequestCounters(resource: resource) { labels in
                self.registry.makeCounter(descriptor: Self.descriptor("mcp_bouncer_requests_total"), labels: labels)
            },
            requestDuration: self.registry.makeDurationHistogram(descriptor: Self.descriptor("mcp_bouncer_request_duration_seconds"), labels: labels, buckets: Self.durationBuckets),
            upstreamDuration: self.registry.makeDurationHistogram(descriptor: Self.descriptor("mcp_bouncer_upstream_duration_seconds"), labels: labels, buckets: Self.durationBuckets),
            responseSize: self.registry.makeValueHistogram(descriptor: Self.descriptor("mcp_bouncer_response_size_bytes"), labels: labels, buckets: Self.sizeBuckets)
        )
    }

    /// A counter by label values, made on first use. `labels` are (name, value) pairs whose
    /// values the caller bounds. Private: every metric has its typed member here.
    private func counter(_ name: String, _ labels: [(String, String)]) -> Counter {
        let key = LabelsKey(name: name, labels: labels.flatMap { [$0.0, $0.1] })
        return self.labelled.withLockedValue { counters in
            if let counter = counters[key] { return counter }
            let counter = self.registry.makeCounter(descriptor: Self.descriptor(name), labels: labels)
            counters[key] = counter
            return counter
        }
    }

    private func gauge(_ name: String, _ labels: [(String, String)]) -> Gauge {
        self.registry.makeGauge(descriptor: Self.descriptor(name), labels: labels)
    }

    /// Whether an authorization server's keys or metadata could be loaded, by issuer.
    public func authorizationServerUp(issuer: String, up: Bool) {
        self.gauge("mcp_bouncer_authorization_server_up", [("issuer", issuer)]).set(Int64(up ? 1 : 0))
    }

    /// Whether calls to an authorization server fail fast (its circuit is open), by issuer.
    public func circuitOpen(issuer: String, open: Bool) {
        self.gauge("mcp_bouncer_authorization_server_circuit_open", [("issuer", issuer)]).set(Int64(open ? 1 : 0))
    }

    /// A reload of `what` (`policy`, `tls_certificate`).
    public func reload(what: String, succeeded: Bool) {
        self.counter("mcp_bouncer_reloads_total", [("what", what), ("result", succeeded ? "ok" : "failed")]).increment()
    }

    /// A call to an authorization server, counted by `purpose` (metadata, jwks, token,
    /// introspection) and `outcome`, and timed by purpose.
    public func authorizationServerRequest(purpose: String, outcome: String, duration: TimeAmount) {
        self.counter("mcp_bouncer_authorization_server_requests_total", [("purpose", purpose), ("outcome", outcome)]).increment()
        let histogram = self.fetchDurations.withLockedValue { histograms in
            if let existing = histograms[purpose] { return existing }
            let created = self.registry.makeDurationHistogram(
                descriptor: Self.descriptor("mcp_bouncer_authorization_server_request_duration_seconds"), labels: [("purpose", purpose)], buckets: Self.durationBuckets
            )
            histograms[purpose] = created
            return created
        }
        histogram.record(Duration.nanoseconds(duration.nanoseconds))
    }

    /// The era an upstream is known to speak: 1 for it, 0 for the others.
    public func upstreamEra(resource: String, era: UpstreamEra) {
        for candidate in UpstreamEra.allCases {
            self.gauge("mcp_bouncer_upstream_era", [("resource", resource), ("era", candidate.rawValue)]).set(Int64(candidate == era ? 1 : 0))
        }
    }

    /// An RFC 7662 introspection: `result` active, inactive or unavailable.
    public func introspection(result: String) {
        self.counter("mcp_bouncer_introspections_total", [("result", result)]).increment()
    }

    public func toolDefinitionChange(resource: String, finding: String, action: String) {
        self.counter("mcp_bouncer_tool_definition_changes_total", [("resource", resource), ("finding", finding), ("action", action)]).increment()
    }

    /// `outcome`: passed, or why the request was blocked (``ServerRequestReview/Block``).
    public func senderConstraint(result: String) {
        self.counter("mcp_bouncer_token_bindings_total", [("result", result)]).increment()
    }

    public func bridgeEvent(resource: String, event: String) {
        self.counter("mcp_bouncer_bridge_events_total", [("resource", resource), ("event", event)]).increment()
    }

    public func serverRequest(resource: String, method: String, outcome: String) {
        self.counter("mcp_bouncer_server_requests_total", [("resource", resource), ("method", method), ("outcome", outcome)]).increment()
    }

    public func rejection(resource: String?, reason: String) {
        self.counter("mcp_bouncer_rejections_total", [("resource", resource ?? ""), ("reason", reason)]).increment()
    }

    /// `result`: valid, invalid or unavailable.
    public func tokenVerification(result: String, cached: Bool) {
        guard let counters = self.verifications[result] else { return }
        (cached ? counters.hit : counters.miss).increment()
    }

    /// `result`: ok, cached, refused or unavailable.
    public func tokenExchange(result: String) {
        self.exchanges[result]?.increment()
    }
}
