import Atomics
import BouncerCore
import Prometheus

/// `mcp_bouncer_requests_total` for one resource, its label sets resolved when the gateway is
/// built from the policy: one slot per method label (the methods the specification defines,
/// the HTTP methods a request without a JSON-RPC body counts under, `other`) and, for a method
/// whose rule is per target, one per target pattern of that rule and `other`. A request finds
/// its slot by its method's name and, for such a method, the rule's own pattern table; the
/// slot holds one counter per outcome, each made on first use (a series appears once it
/// counts) and from then on read with one atomic load. No lock, no key built, no label String
/// made per request.
///
/// Labels stay bounded by the policy, as ``GatewayMetrics`` promises: a name the policy does not
/// list counts as `other`, whatever a client sprays.
public final class RequestCounters: Sendable {
    /// The counters of one (method, target) label set, one per outcome label.
    final class Slot: Sendable {
        let method: String
        let target: String
        private let counters: [ManagedAtomicLazyReference<Counter>]

        init(method: String, target: String) {
            self.method = method
            self.target = target
            self.counters = Outcome.labels.map { _ in ManagedAtomicLazyReference() }
        }

        func counter(_ outcome: Outcome, of counters: RequestCounters) -> Counter {
            let reference = self.counters[outcome.rawValue]
            if let counter = reference.load() { return counter }
            // Made at most a few times per label set (the registry hands back the same
            // counter for the same labels, so a race costs nothing but the lookup).
            let counter = counters.make(
                [("resource", counters.resource), ("method", self.method), ("target", self.target), ("outcome", Outcome.labels[outcome.rawValue])]
            )
            return reference.storeIfNilThenLoad(counter)
        }
    }

    /// The `outcome` label: a refusal by policy is `denied`, every other end its audit outcome.
    enum Outcome: Int, CaseIterable {
        case denied, forwarded, refused, upstreamError, clientClosed, connectionClosed

        static let labels = Self.allCases.map(\.label)

        init(_ outcome: AuditRequest.Outcome, decision: AuditRequest.Decision) {
            guard decision != .denied else {
                self = .denied
                return
            }
            switch outcome {
            case .forwarded: self = .forwarded
            case .refused: self = .refused
            case .upstreamError: self = .upstreamError
            case .clientClosed: self = .clientClosed
            case .connectionClosed: self = .connectionClosed
            }
        }

        private var label: String {
            switch self {
            case .denied: "denied"
            case .forwarded: AuditRequest.Outcome.forwarded.rawValue
            case .refused: AuditRequest.Outcome.refused.rawValue
            case .upstreamError: AuditRequest.Outcome.upstreamError.rawValue
            case .clientClosed: AuditRequest.Outcome.clientClosed.rawValue
            case .connectionClosed: AuditRequest.Outcome.connectionClosed.rawValue
            }
        }
    }

    /// A method's slots: the one without a target, or its rule's patterns and `other`.
    private struct MethodSlots: Sendable {
        let plain: Slot
        let targets: PatternTable<Slot>?
        let otherTarget: Slot?
    }

    /// HTTP methods a request without a JSON-RPC method counts under; others are `other`.
    static let httpMethods = ["GET", "POST", "DELETE"]

    private let resource: String
    /// Makes (or finds) the counter of a label set in the registry.
    private let make: @Sendable ([(String, String)]) -> Counter
    private let methods: [String: MethodSlots]
    private let byHTTPMethod: [String: Slot]
    private let other: Slot

    /// `make` makes `mcp_bouncer_requests_total`'s counter of a label set (``GatewayMetrics``
    /// owns the names).
    init(resource: ResourcePolicy, make: @escaping @Sendable ([(String, String)]) -> Counter) {
        self.resource = resource.path
        self.make = make
        var methods: [String: MethodSlots] = [:]
        for method in GatewayMetrics.knownMethods {
            if case .byTarget(let table)? = resource.methods.rules.lookup(method)?.value {
                var targets = PatternTable<Slot>()
                for entry in table.entries { targets.insert(entry.pattern, Slot(method: method, target: entry.pattern.text)) }
                methods[method] = MethodSlots(plain: Slot(method: method, target: ""), targets: targets, otherTarget: Slot(method: method, target: "other"))
            } else {
                methods[method] = MethodSlots(plain: Slot(method: method, target: ""), targets: nil, otherTarget: nil)
            }
        }
        self.methods = methods
        self.byHTTPMethod = Dictionary(uniqueKeysWithValues: Self.httpMethods.map { ($0, Slot(method: $0, target: "")) })
        self.other = Slot(method: "other", target: "")
    }

    /// Counts one request. `method` and `target` are the JSON-RPC method and its target (tool,
    /// prompt, resource URI), nil without a body; `httpMethod` counts a request without one.
    func count(httpMethod: String, method: String?, target: String?, outcome: AuditRequest.Outcome, decision: AuditRequest.Decision) {
        let outcome = Outcome(outcome, decision: decision)
        guard let method else {
            (self.byHTTPMethod[httpMethod] ?? self.other).counter(outcome, of: self).increment()
            return
        }
        if let slots = self.methods[method] {
            var slot = slots.plain
            if let target, let targets = slots.targets {
                slot = targets.lookup(target)?.value ?? slots.otherTarget ?? slot
            }
            slot.counter(outcome, of: self).increment()
            return
        }
        // Not a method the specification defines (per-target rules are only for some that
        // are: `MethodTable.targetParameter`).
        self.other.counter(outcome, of: self).increment()
    }
}
