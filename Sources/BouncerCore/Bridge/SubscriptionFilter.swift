/// `subscriptions/listen` (2026-07-28) served from a legacy upstream: which of the requested
/// notifications the bridge can honour, given what the upstream's `initialize` announced and
/// which resources it agreed to subscribe to, and each upstream notification as the listening
/// client gets it (tagged with the subscription id) or not at all. Pure.
public struct SubscriptionFilter: Sendable, Equatable {
    public var toolsListChanged = false
    public var promptsListChanged = false
    public var resourcesListChanged = false
    public var resourceSubscriptions: [String] = []

    public static let subscriptionIDKey = "io.modelcontextprotocol/subscriptionId"

    public init(toolsListChanged: Bool = false, promptsListChanged: Bool = false, resourcesListChanged: Bool = false, resourceSubscriptions: [String] = []) {
        self.toolsListChanged = toolsListChanged
        self.promptsListChanged = promptsListChanged
        self.resourcesListChanged = resourcesListChanged
        self.resourceSubscriptions = resourceSubscriptions
    }

    /// The filter a `subscriptions/listen` asks for (`params.notifications`); nil when it is not
    /// one (not an object, a member of the wrong type, more than `maxURIs` URIs).
    public init?(requested: JSONValue?, maxURIs: Int = 100) {
        guard case .object(let members)? = requested else { return nil }
        func flag(_ key: String) -> Bool? {
            switch members[key] {
            case nil, .null?: return false
            case .bool(let value)?: return value
            default: return nil
            }
        }
        guard let tools = flag("toolsListChanged"), let prompts = flag("promptsListChanged"), let resources = flag("resourcesListChanged") else { return nil }
        var uris: [String] = []
        switch members["resourceSubscriptions"] {
        case nil, .null?: break
        case .array(let items)?:
            guard items.count <= maxURIs else { return nil }
            for item in items {
                guard let uri = item.stringValue, !uri.isEmpty else { return nil }
                if !uris.contains(uri) { uris.append(uri) }
            }
        default: return nil
        }
        self.init(toolsListChanged: tools, promptsListChanged: prompts, resourcesListChanged: resources, resourceSubscriptions: uris)
    }

    /// What the bridge honours of `self`: list changes the upstream announced
    /// (`capabilities.<x>.listChanged`), and the resources it agreed to subscribe to
    /// (`subscribed`, asked only when it announced `resources.subscribe`).
    public func honoured(byUpstream initialize: JSONValue, subscribed: [String]) -> SubscriptionFilter {
        func announces(_ capability: String, _ flag: String) -> Bool { initialize["capabilities"]?[capability]?[flag] == .bool(true) }
        return SubscriptionFilter(
            toolsListChanged: self.toolsListChanged && announces("tools", "listChanged"),
            promptsListChanged: self.promptsListChanged && announces("prompts", "listChanged"),
            resourcesListChanged: self.resourcesListChanged && announces("resources", "listChanged"),
            resourceSubscriptions: self.resourceSubscriptions.filter(subscribed.contains)
        )
    }

    /// The filter as the acknowledgment carries it: requested types only.
    public var json: JSONValue {
        var members: [String: JSONValue] = [:]
        if self.toolsListChanged { members["toolsListChanged"] = .bool(true) }
        if self.promptsListChanged { members["promptsListChanged"] = .bool(true) }
        if self.resourcesListChanged { members["resourcesListChanged"] = .bool(true) }
        if !self.resourceSubscriptions.isEmpty { members["resourceSubscriptions"] = .array(self.resourceSubscriptions.map(JSONValue.string)) }
        return .object(members)
    }

    /// The first message of the stream: what is honoured, under the subscription's id.
    public func acknowledgment(subscriptionID: JSONValue) -> JSONValue {
        .object([
            "jsonrpc": .string("2.0"), "method": .string("notifications/subscriptions/acknowledged"),
            "params": .object(["notifications": self.json, "_meta": .object([Self.subscriptionIDKey: subscriptionID])]),
        ])
    }

    /// An upstream notification as the listening client gets it, tagged with the
    /// subscription's id; nil for anything the filter does not let through (a request, a
    /// response, a type not honoured, an update of a resource not subscribed to or under one).
    public func relay(_ message: JSONValue, subscriptionID: JSONValue) -> JSONValue? {
        guard case .object(var members) = message, members["id"] == nil, let method = members["method"]?.stringValue else { return nil }
        switch method {
        case "notifications/tools/list_changed": guard self.toolsListChanged else { return nil }
        case "notifications/prompts/list_changed": guard self.promptsListChanged else { return nil }
        case "notifications/resources/list_changed": guard self.resourcesListChanged else { return nil }
        case "notifications/resources/updated":
            guard let uri = members["params"]?["uri"]?.stringValue,
                  self.resourceSubscriptions.contains(where: { uri == $0 || (uri.hasPrefix($0) && ($0.hasSuffix("/") || uri.dropFirst($0.count).first == "/")) })
            else { return nil }
        default:
            return nil
        }
        var params = members["params"]?.objectValue ?? [:]
        var meta = params["_meta"]?.objectValue ?? [:]
        meta[Self.subscriptionIDKey] = subscriptionID
        params["_meta"] = .object(meta)
        members["params"] = .object(params)
        return .object(members)
    }
}
