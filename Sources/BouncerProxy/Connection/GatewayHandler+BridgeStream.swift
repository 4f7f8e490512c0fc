import BouncerCore
import NIOCore
import NIOHTTP1
import Prometheus

/// The handler's side of a bridged `subscriptions/listen` (``BridgeSubscription``): an event
/// stream it writes as the subscription says, in place of an upstream exchange.
extension GatewayHandler: BridgeStreamSink {
    /// Hands the connection's response to `subscription`.
    func stream(_ subscription: BridgeSubscription, request: ClientRequest, resource: ResolvedResource, context: ChannelHandlerContext) {
        self.machine.forwardingStarted()
        self.bridgeStream = (request, resource, subscription)
        request.bridged = ("listening", nil)
        subscription.run(self)
    }

    func bridgeStreamStarted(_ first: String) {
        guard let context = self.context, let (request, _, _) = self.bridgeStream else { return }
        let head = RelayedResponseHead(status: .ok, headers: ["Content-Type": "text/event-stream", "Cache-Control": "no-store"])
        do {
            let serialised = try self.writer.serialiseHead(
                head, keepAlive: self.machine.keepAlive(request.head.isKeepAlive), allocator: context.channel.allocator, rewritten: .unknownLength
            )
            self.writer.writeHead(serialised, context: context)
        } catch {
            return self.bridgeStreamEnded(outcome: "head_not_written")
        }
        self.gateway.metrics.openStreams.increment()
        self.bridgeStreamEvent(first)
    }

    func bridgeStreamEvent(_ text: String) {
        guard let context = self.context, self.bridgeStream != nil else { return }
        _ = self.writer.writeBody(context.channel.allocator.buffer(string: text), context: context)
        context.flush()
    }

    func bridgeStreamEnded(outcome: String) {
        guard let context = self.context, let (request, resource, _) = self.bridgeStream else { return }
        self.bridgeStream = nil
        self.gateway.metrics.openStreams.decrement()
        request.bridged = ("listen_ended.\(outcome)", nil)
        self.record(request, resource: resource, decision: .allowed, outcome: .forwarded, reason: nil, status: 200)
        self.endResponse(keepAlive: request.head.isKeepAlive, context: context)
    }

    /// The connection is closing: a bridged call under way is cancelled upstream, a
    /// subscription ends (``clientLeftStream()``).
    func clientLeftBridge() {
        self.request?.bridgeCancellation?.fire()
        self.clientLeftStream()
    }

    /// The client left while its subscription streamed: recorded, and the stream count put right
    /// (the subscription unsubscribes upstream itself).
    private func clientLeftStream() {
        guard let (request, resource, _) = self.bridgeStream else { return }
        self.bridgeStream = nil
        self.gateway.metrics.openStreams.decrement()
        self.record(request, resource: resource, decision: .allowed, outcome: .clientClosed, reason: "client_closed", status: 200)
    }
}
