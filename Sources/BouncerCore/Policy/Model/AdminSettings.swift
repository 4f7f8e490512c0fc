/// `admin:`: the listener for `/metrics`, `/healthz` and `/readyz`, never the public port.
public struct AdminSettings: Sendable {
    public var listen: ListenAddress

    public init(listen: ListenAddress) {
        self.listen = listen
    }
}
