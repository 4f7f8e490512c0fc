// swift-tools-version: 6.1
// Microbenchmarks of the request path's pure parts (BouncerCore), with ordo-one/benchmark:
// wall time, CPU and malloc counts per operation; and nio-floor, the bare SwiftNIO proxy that
// ../run measures the gateway against. A separate package so the gateway and its test suite
// never build the benchmark tooling. Run: ../micro (or `swift package benchmark`).
import PackageDescription

let package = Package(
    name: "mcp-bouncer-micro",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "mcp-bouncer", path: "../.."),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
    ],
    targets: [
        .executableTarget(
            name: "RequestPath",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "BouncerCore", package: "mcp-bouncer"),
                .product(name: "BouncerProxy", package: "mcp-bouncer"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Benchmarks/RequestPath",
            swiftSettings: [.swiftLanguageMode(.v6)],
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        .executableTarget(
            name: "nio-floor",
            dependencies: [
                .product(name: "BouncerTLS", package: "mcp-bouncer"),
                .product(name: "BouncerCore", package: "mcp-bouncer"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            path: "Benchmarks/NIOFloor",
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
    ]
)
