// swift-tools-version: 6.1
import PackageDescription

let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

// Tests import HTTP types through Hummingbird's re-exports, so they skip MemberImportVisibility.
let testSettings: [SwiftSetting] = [.enableUpcomingFeature("ExistentialAny")]

let package = Package(
    name: "wechat-relay",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "relay", targets: ["relay"]),
        .library(name: "WeChatCrypto", targets: ["WeChatCrypto"]),
        .library(name: "WeChatXML", targets: ["WeChatXML"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/vapor/sqlite-nio.git", from: "1.13.2"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
    ],
    targets: [
        // Pure WeChat message crypto: no server framework, no XML.
        .target(
            name: "WeChatCrypto",
            dependencies: [
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CryptoExtras", package: "swift-crypto"),
            ],
            swiftSettings: strict
        ),
        // Pure WeChat XML: bounded parsing, envelopes, lossless JSON, reply XML.
        .target(name: "WeChatXML", swiftSettings: strict),
        // The domain: events, types, dedup, configuration model, store protocols.
        .target(
            name: "RelayCore",
            dependencies: [
                "WeChatCrypto", "WeChatXML",
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strict
        ),
        // Store implementations.
        .target(
            name: "RelayStore",
            dependencies: [
                "RelayCore",
                .product(name: "SQLiteNIO", package: "sqlite-nio"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // HTTP, services, configuration loading, the one builder.
        .target(
            name: "RelayServer",
            dependencies: [
                "RelayCore", "RelayStore", "WeChatCrypto", "WeChatXML",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
            ],
            // The admin API's OpenAPI document, compiled into the binary: served and printed by
            // the relay itself, so it cannot go missing beside a copied executable.
            resources: [.embedInCode("Admin/openapi.yaml")],
            swiftSettings: strict
        ),
        // `relay bench`: load generator and scenarios, kept out of the server module.
        .target(
            name: "RelayBench",
            dependencies: [
                "RelayServer", "RelayCore", "RelayStore", "WeChatCrypto", "WeChatXML",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "relay",
            dependencies: [
                "RelayServer", "RelayCore", "RelayStore", "RelayBench", "WeChatXML",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        // Helpers shared by the test targets: vectors, fake WeChat, receivers, test clock.
        .target(
            name: "RelayTestSupport",
            dependencies: [
                "RelayServer", "RelayCore", "RelayStore", "WeChatCrypto", "WeChatXML",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
            ],
            path: "Tests/Support",
            swiftSettings: testSettings
        ),
        .testTarget(
            name: "WeChatCryptoTests",
            dependencies: ["WeChatCrypto", "RelayTestSupport", .product(name: "Crypto", package: "swift-crypto"),
                           .product(name: "CryptoExtras", package: "swift-crypto")],
            swiftSettings: testSettings
        ),
        .testTarget(
            name: "WeChatXMLTests",
            dependencies: ["WeChatXML", "RelayTestSupport"],
            exclude: ["Corpus"],
            swiftSettings: testSettings
        ),
        .testTarget(
            name: "RelayServerTests",
            dependencies: [
                "RelayServer", "RelayCore", "RelayStore", "WeChatCrypto", "WeChatXML", "RelayTestSupport",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
            ],
            swiftSettings: testSettings
        ),
    ]
)
