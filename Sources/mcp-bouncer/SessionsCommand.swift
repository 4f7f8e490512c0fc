import ArgumentParser
import BouncerCore
import Crypto
import Foundation

struct Sessions: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make session keys (sessions.keys in the policy).",
        subcommands: [Keygen.self]
    )

    struct Keygen: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print a fresh session key secret: 32 random bytes, base64, for sessions.keys[].secret.",
            discussion: "Every replica behind one load balancer needs the same keys. Put the new key first to rotate: it seals, the old ones still open."
        )

        func run() {
            print(SessionKey.newSecret())
        }
    }
}
