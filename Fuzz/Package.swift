// swift-tools-version: 6.1
// libFuzzer targets for every BouncerCore parser that faces untrusted input. A separate
// package, built with `-sanitize=fuzzer,address` by ../scripts/fuzz, so the gateway and its
// test suite never build with the fuzzer runtime. One executable, whose main hands over to
// libFuzzer's driver; BOUNCER_FUZZ_TARGET picks the target (see Targets.swift).
import PackageDescription

let package = Package(
    name: "mcp-bouncer-fuzz",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "mcp-bouncer", path: ".."),
        // NIO's llhttp-based decoders, the differential oracle of the `http1` target.
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
    ],
    targets: [
        .target(name: "CFuzzerDriver", path: "Sources/CFuzzerDriver"),
        .executableTarget(
            name: "bouncer-fuzz",
            dependencies: [
                "CFuzzerDriver",
                .product(name: "BouncerCore", package: "mcp-bouncer"),
                .product(name: "BouncerProbe", package: "mcp-bouncer"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            path: "Sources/BouncerFuzz",
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
    ]
)
