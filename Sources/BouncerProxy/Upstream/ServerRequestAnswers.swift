import BouncerCore
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1

/// Where a server-to-client request was seen: what its audit record, the rate limit and the
/// gateway's answer to the upstream need of the exchange that carried it.
struct ServerRequestOrigin {
    let resource: ResolvedResource
    /// The upstream session it belongs to (`Mcp-Session-Id`), when the revision has sessions.
    let session: String?
    let subject: String?
    /// The gateway's id of the client request whose response carried it.
    let requestID: String
    /// The upstream request's headers the answer repeats: the upstream credential, the session
    /// and the protocol revision.
    let upstreamHeaders: [(String, String)]

    /// Whose elicitations count together: the session, else the subject, on this resource.
    var rateKey: String {
        "\(self.resource.policy.path) \(self.session.map { "session \($0)" } ?? "subject \(self.subject ?? "")")"
    }

    /// The headers of the upstream request `head` that an answer on the same session repeats.
    static func headers(of head: UpstreamRequestHead, resource: ResolvedResource) -> [(String, String)] {
        var names = ["authorization", "mcp-session-id", "mcp-protocol-version"]
        if case .staticHeader(let name, _) = resource.credential { names.append(name.lowercased()) }
        return head.allFields.filter { names.contains($0.name.lowercased()) }.map { ($0.name, $0.value) }
    }
}

/// The elicitation guard's memory: how many elicitations each session was sent lately. The
/// audit records, metrics, log lines and answers upstream are ``Gateway/judged(_:origin:logger:on:)``.
final class ServerRequestAnswers: Sendable {
    private let limiter = NIOLockedValueBox(ServerRequestRateLimiter())

    /// Whether one more elicitation may reach `origin`'s client now (and counts it if so).
    func admitElicitation(_ origin: ServerRequestOrigin) -> Bool {
        let limit = origin.resource.policy.serverRequests.rateLimitPerSession
        let now = Int64(NIODeadline.now().uptimeNanoseconds / 1_000_000)
        return self.limiter.withLockedValue { $0.admit(origin.rateKey, limit: limit, now: now) }
    }
}

extension Gateway {
    /// Acts on what the response inspector saw in one upstream message: tools to the
    /// gateway's memory (``noteTools(_:seen:findings:)``), a `tools/list_changed` to a new
    /// listing, server-to-client requests to the audit trail and, when blocked, to the
    /// gateway's own answer upstream. The caller bounds the requests per response first.
    func act(on report: ResponseInspector.Report, resource: ResolvedResource, origin: ServerRequestOrigin, on eventLoop: any EventLoop) {
        if !report.toolsSeen.isEmpty || !report.toolFindings.isEmpty {
            self.noteTools(resource, seen: report.toolsSeen, findings: report.toolFindings)
        }
        if report.toolsChanged { self.relistTools(of: resource) }
        if !report.serverRequests.isEmpty { self.judged(report.serverRequests, origin: origin, logger: self.logger, on: eventLoop) }
    }

    /// Reports what the guard decided on each request and answers the upstream for those
    /// blocked on a stream: `decline` for an elicitation, -32601 for sampling and roots.
    func judged(_ reviews: [ServerRequestReview], origin: ServerRequestOrigin, logger: Logger, on eventLoop: any EventLoop) {
        for review in reviews {
            self.events.serverRequestJudged(review, origin: origin)
            if let reply = review.upstreamReply { self.answerUpstream(reply, review: review, origin: origin, logger: logger, on: eventLoop) }
        }
    }

    static func auditDetails(_ review: ServerRequestReview, origin: ServerRequestOrigin) -> [String: JSONValue] {
        var details: [String: JSONValue] = [
            "resource": .string(origin.resource.policy.path), "method": .string(review.method), "form": .string(review.form.rawValue),
            "decision": .string(review.blocked == nil ? "passed" : "blocked"), "reason": review.blocked.map { .string($0.rawValue) } ?? .null,
            "request_id": .string(origin.requestID), "jsonrpc_id": review.id,
            "subject": origin.subject.map(JSONValue.string) ?? .null,
            "session": origin.session.map { .string(AuditDigestSource($0).shortDigest) } ?? .null,
        ]
        if let detail = review.detail { details["detail"] = .string(detail) }
        if let key = review.key { details["input_key"] = .string(key) }
        if let mode = review.mode { details["mode"] = .string(mode) }
        if let schema = review.schema { details["schema"] = schema }
        if let origin = review.urlOrigin { details["url_origin"] = .string(origin) }
        return details
    }

    /// POSTs the gateway's answer to a request it kept from the client, on the same session
    /// and with the resource's upstream credential, so the server's tool call goes on.
    private func answerUpstream(_ reply: String, review: ServerRequestReview, origin: ServerRequestOrigin, logger: Logger, on eventLoop: any EventLoop) {
        let resource = origin.resource
        let url = resource.upstream.uri.origin + resource.upstream.requestPath
        var headers = origin.upstreamHeaders + [("Content-Type", "application/json"), ("Accept", "application/json, text/event-stream")]
        if let dpop = resource.upstreamDPoP { headers = dpop.proved(headers, method: "POST") }
        self.fetcher.send(
            .POST, url, purpose: "mcp", headers: headers, body: reply, tls: resource.upstreamTLS, serverName: resource.policy.upstreamTLS.serverName, on: eventLoop
        ).whenComplete { result in
            let metadata: Logger.Metadata = ["resource": "\(resource.policy.path)", "method": "\(review.method)", "request_id": "\(origin.requestID)"]
            switch result {
            case .success(let response) where (200..<300).contains(response.status):
                logger.debug("answered the upstream in the client's place", metadata: metadata.merging(["status": "\(response.status)"]) { $1 })
            case .success(let response):
                logger.warning("the upstream refused the gateway's answer to its request", metadata: metadata.merging(["status": "\(response.status)"]) { $1 })
            case .failure(let error):
                logger.warning("cannot answer the upstream's request in the client's place", metadata: metadata.merging(["reason": "\(error)"]) { $1 })
            }
        }
    }
}
