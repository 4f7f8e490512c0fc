/// JSON-RPC 2.0 error codes the gateway uses.
public enum JSONRPCErrorCode {
    public static let parseError = -32700
    public static let invalidRequest = -32600
    public static let methodNotFound = -32601
    public static let invalidParams = -32602
    public static let internalError = -32603
    /// Implementation-defined server errors (-32000 to -32099).
    public static let unauthorized = -32001
    public static let forbidden = -32003
    public static let upstreamError = -32010
    public static let headerMismatch = -32020
    /// 2026-07-28: the request needs a client capability its `_meta` did not declare.
    public static let missingClientCapability = -32021
    /// 2026-07-28: the protocol revision is not one the server speaks (`data.supported`).
    public static let unsupportedProtocolVersion = -32022
    /// 2025-11-25: the request needs a URL-mode elicitation completed first.
    public static let urlElicitationRequired = -32042
    /// What the MCP TypeScript SDK answers for an unknown session (with 404).
    public static let sessionNotFound = -32001
    public static let rateLimited = -32029
}

/// One JSON-RPC message as the gateway classifies it.
public enum JSONRPCMessage: Sendable, Hashable {
    case request(id: JSONValue, method: String, params: JSONValue?)
    case notification(method: String, params: JSONValue?)
    /// A response from the client: the answer to a server-to-client request.
    case response(id: JSONValue)

    public var method: String? {
        switch self {
        case .request(_, let method, _), .notification(let method, _): return method
        case .response: return nil
        }
    }

    public var id: JSONValue? {
        switch self {
        case .request(let id, _, _), .response(let id): return id
        case .notification: return nil
        }
    }

    public var params: JSONValue? {
        switch self {
        case .request(_, _, let params), .notification(_, let params): return params
        case .response: return nil
        }
    }

    /// For `tools/call` and `prompts/get` the `params.name`, for `resources/read` the
    /// `params.uri`; `nil` for other methods.
    public func target() throws(JSONRPCFailure) -> String? {
        guard let method = self.method, let parameter = MethodTable.targetParameter[method] else { return nil }
        guard let value = self.params?[parameter]?.stringValue else {
            throw JSONRPCFailure(status: 400, code: JSONRPCErrorCode.invalidParams, message: "\(method) needs a string params.\(parameter)", id: self.id)
        }
        return value
    }
}

/// A request body refused before it reached the policy, with its JSON-RPC error.
public struct JSONRPCFailure: Error, Sendable, Hashable {
    public var status: Int
    public var code: Int
    public var message: String
    public var id: JSONValue?
    /// The error's `data` member, when it has one.
    public var data: JSONValue?

    public init(status: Int, code: Int, message: String, id: JSONValue?, data: JSONValue? = nil) {
        self.status = status
        self.code = code
        self.message = message
        self.id = id
        self.data = data
    }
}

/// A POST body parsed once: one message, or a batch.
public struct JSONRPCBody: Sendable {
    public var messages: JSONRPCMessages
    public var isBatch: Bool

    /// The id to echo in an error about the whole body: the single request's id.
    public var errorID: JSONValue? { self.isBatch ? nil : self.messages.first?.id }

    public init(messages: [JSONRPCMessage], isBatch: Bool) {
        self.messages = JSONRPCMessages(messages)
        self.isBatch = isBatch
    }

    init(single message: JSONRPCMessage) {
        self.messages = JSONRPCMessages(one: message)
        self.isBatch = false
    }

    @inlinable
    public static func parse(_ bytes: some Collection<UInt8>, maxDepth: Int) throws(JSONRPCFailure) -> JSONRPCBody {
        try withContiguousBytes(bytes) { buffer throws(JSONRPCFailure) in try Self.parse(buffer: buffer, maxDepth: maxDepth) }
    }

    /// What the client is told: the class of the error and where, never text taken from the
    /// body (a duplicate key's name stays in the parser's `detail`).
    static func parseErrorMessage(_ error: JSONParseError) -> String {
        switch error.kind {
        case .tooDeep: return "Parse error: JSON nested too deeply"
        case .syntax: return "Parse error: not valid JSON at byte \(error.offset)"
        case .duplicateKey: return "Parse error: a duplicate object key at byte \(error.offset)"
        case .invalidString: return "Parse error: a string that is not valid UTF-8 at byte \(error.offset)"
        }
    }

    @usableFromInline
    static func parse(buffer bytes: UnsafeBufferPointer<UInt8>, maxDepth: Int) throws(JSONRPCFailure) -> JSONRPCBody {
        let value: JSONValue
        do {
            value = try JSONParser(maxDepth: maxDepth).parse(buffer: bytes)
        } catch {
            throw JSONRPCFailure(status: 400, code: JSONRPCErrorCode.parseError, message: Self.parseErrorMessage(error), id: nil)
        }
        switch value {
        case .array(let elements):
            guard !elements.isEmpty else {
                throw JSONRPCFailure(status: 400, code: JSONRPCErrorCode.invalidRequest, message: "Invalid Request: empty batch", id: nil)
            }
            var messages: [JSONRPCMessage] = []
            messages.reserveCapacity(elements.count)
            for element in elements { messages.append(try self.message(element)) }
            return JSONRPCBody(messages: messages, isBatch: true)
        case .object:
            return JSONRPCBody(single: try self.message(value))
        default:
            throw JSONRPCFailure(status: 400, code: JSONRPCErrorCode.invalidRequest, message: "Invalid Request: the body must be a JSON-RPC object", id: nil)
        }
    }

    static func message(_ value: JSONValue) throws(JSONRPCFailure) -> JSONRPCMessage {
        guard let members = value.objectValue else {
            throw JSONRPCFailure(status: 400, code: JSONRPCErrorCode.invalidRequest, message: "Invalid Request: not an object", id: nil)
        }
        var id: JSONValue?
        switch members["id"] {
        case .none: id = nil
        case .some(.string), .some(.number): id = members["id"]
        case .some:
            throw JSONRPCFailure(status: 400, code: JSONRPCErrorCode.invalidRequest, message: "Invalid Request: id must be a string or a number", id: nil)
        }
        func invalid(_ message: String) -> JSONRPCFailure {
            JSONRPCFailure(status: 400, code: JSONRPCErrorCode.invalidRequest, message: "Invalid Request: \(message)", id: id)
        }
        guard members["jsonrpc"] == .string("2.0") else { throw invalid("jsonrpc must be \"2.0\"") }
        if let method = members["method"] {
            guard let name = method.stringValue, !name.isEmpty else { throw invalid("method must be a non-empty string") }
            if members["result"] != nil || members["error"] != nil { throw invalid("a request has no result or error") }
            let params = members["params"]
            if let params, params.objectValue == nil, params.arrayValue == nil { throw invalid("params must be an object or an array") }
            if let id { return .request(id: id, method: name, params: params) }
            return .notification(method: name, params: params)
        }
        guard let id else { throw invalid("a message needs a method or an id") }
        let hasResult = members["result"] != nil
        let hasError = members["error"] != nil
        guard hasResult != hasError else { throw invalid("a response has exactly one of result and error") }
        return .response(id: id)
    }
}

extension JSONRPCFailure {
    /// The JSON-RPC error object as a response body.
    public var body: String {
        JSONRPCFailure.errorBody(code: self.code, message: self.message, id: self.id, data: self.data)
    }

    public static func errorBody(code: Int, message: String, id: JSONValue?, data: JSONValue? = nil) -> String {
        var error = JSONWriter()
        error.add("code", .number(String(code)))
        error.add("message", message)
        if let data { error.add("data", data) }
        var body = JSONWriter()
        body.add("jsonrpc", "2.0")
        body.add("id", id ?? .null)
        body.add("error", error)
        return body.string
    }

    /// The same error response as a value, for a message rewritten inside a batch or event.
    public static func errorValue(code: Int, message: String, id: JSONValue?) -> JSONValue {
        .object([
            "jsonrpc": .string("2.0"), "id": id ?? .null,
            "error": .object(["code": .number(String(code)), "message": .string(message)]),
        ])
    }
}

/// A body's messages: the one of a single message (nearly every body) held as it is, with no
/// array allocated for it, or a batch's.
public struct JSONRPCMessages: RandomAccessCollection, ExpressibleByArrayLiteral, Equatable, Sendable {
    private enum Storage: Equatable, Sendable {
        case one(JSONRPCMessage)
        case many([JSONRPCMessage])
    }

    private let storage: Storage

    public init(_ messages: [JSONRPCMessage]) {
        self.storage = messages.count == 1 ? .one(messages[0]) : .many(messages)
    }

    public init(arrayLiteral messages: JSONRPCMessage...) {
        self.init(messages)
    }

    init(one message: JSONRPCMessage) {
        self.storage = .one(message)
    }

    public var startIndex: Int { 0 }

    public var endIndex: Int {
        switch self.storage {
        case .one: 1
        case .many(let messages): messages.count
        }
    }

    public subscript(position: Int) -> JSONRPCMessage {
        switch self.storage {
        case .one(let message):
            precondition(position == 0, "index out of range")
            return message
        case .many(let messages):
            return messages[position]
        }
    }

    public static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.elementsEqual(rhs)
    }
}
