// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "switchboard",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "switchboard", targets: ["switchboard"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-websocket.git", from: "2.8.1"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
    ],
    targets: [
        .target(
            name: "SwitchboardCore",
            dependencies: [
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // C: an SQLite VFS that gathers each commit's write-ahead-log frames into one write.
        .target(
            name: "CSQLiteWALBuffer",
            linkerSettings: [.linkedLibrary("sqlite3")]
        ),
        .target(
            name: "SwitchboardStore",
            dependencies: [
                "SwitchboardCore", "CSQLiteWALBuffer",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .target(
            name: "SwitchboardSystemd",
            dependencies: [
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "SwitchboardDelivery",
            dependencies: [
                "SwitchboardCore", "SwitchboardStore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "SwitchboardRuntime",
            dependencies: [
                "SwitchboardCore", "SwitchboardStore", "SwitchboardDelivery", "SwitchboardSystemd",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "SwitchboardHTTP",
            dependencies: [
                "SwitchboardCore", "SwitchboardStore", "SwitchboardRuntime", "SwitchboardDelivery",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras"),
            ]
        ),
        .target(
            name: "SwitchboardDaemon",
            dependencies: [
                "SwitchboardCore", "SwitchboardStore", "SwitchboardRuntime", "SwitchboardHTTP", "SwitchboardDelivery", "SwitchboardSystemd",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "WebhookAdapter",
            dependencies: [
                "SwitchboardCore", "SwitchboardRuntime",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            path: "adapters/webhook/Sources"
        ),
        .target(
            name: "MetaAdapter",
            dependencies: [
                "SwitchboardCore", "SwitchboardRuntime",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            path: "adapters/meta/Sources"
        ),
        .target(
            name: "WhatsAppAdapter",
            dependencies: [
                "SwitchboardCore", "SwitchboardRuntime", "MetaAdapter",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            path: "adapters/whatsapp/Sources"
        ),
        .target(
            name: "MessengerAdapter",
            dependencies: [
                "SwitchboardCore", "SwitchboardRuntime", "MetaAdapter",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            path: "adapters/messenger/Sources"
        ),
        .target(
            name: "InstagramAdapter",
            dependencies: [
                "SwitchboardCore", "SwitchboardRuntime", "MetaAdapter", "MessengerAdapter",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            path: "adapters/instagram/Sources"
        ),
        // The email parsing layer (MIME, charsets, quotes, loop guard, threading, the IMAP
        // response parser): no I/O and no NIO, so the fuzz targets build it on its own.
        .target(
            name: "EmailParsing",
            dependencies: [
                "SwitchboardCore",
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            path: "adapters/email/Parsing"
        ),
        .target(
            name: "EmailAdapter",
            dependencies: [
                "SwitchboardCore", "SwitchboardRuntime", "EmailParsing",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            path: "adapters/email/Sources"
        ),
        .target(
            name: "WebchatAdapter",
            dependencies: [
                "SwitchboardCore", "SwitchboardRuntime",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            path: "adapters/webchat/Sources",
            resources: [.copy("Assets")]
        ),
        .target(
            name: "LineAdapter",
            dependencies: [
                "SwitchboardCore", "SwitchboardRuntime",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            path: "adapters/line/Sources"
        ),
        .executableTarget(
            name: "switchboard",
            dependencies: [
                "SwitchboardCore", "SwitchboardStore", "SwitchboardRuntime", "SwitchboardHTTP",
                "SwitchboardDelivery", "SwitchboardSystemd", "SwitchboardDaemon", "WebhookAdapter", "LineAdapter",
                "MetaAdapter", "WhatsAppAdapter", "MessengerAdapter", "InstagramAdapter", "EmailAdapter", "WebchatAdapter",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "HummingbirdWSClient", package: "hummingbird-websocket"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(
            name: "SwitchboardBench",
            dependencies: [
                "EmailParsing",
                "SwitchboardCore",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Benchmarks/SwitchboardBench"
        ),
        // libFuzzer targets (`make fuzz` builds them with -sanitize=fuzzer); a plain build makes
        // corpus-replay tools of the same code.
        .target(name: "FuzzSupport", path: "Fuzz/Support"),
        .executableTarget(
            name: "fuzz-mime",
            dependencies: ["EmailParsing", "FuzzSupport"],
            path: "Fuzz/MIME"
        ),
        .executableTarget(
            name: "fuzz-imap",
            dependencies: ["EmailParsing", "FuzzSupport"],
            path: "Fuzz/IMAP"
        ),
        .testTarget(
            name: "SwitchboardCoreTests",
            dependencies: ["SwitchboardCore", .product(name: "Logging", package: "swift-log")],
            path: "Tests/SwitchboardCoreTests"
        ),
        .testTarget(
            name: "EmailAdapterTests",
            dependencies: ["EmailAdapter", "EmailParsing", "SwitchboardCore"],
            path: "Tests/EmailAdapterTests",
            resources: [.copy("Fixtures")]
        ),
        .testTarget(
            name: "SwitchboardSystemdTests",
            dependencies: ["SwitchboardSystemd", .product(name: "Logging", package: "swift-log")],
            path: "Tests/SwitchboardSystemdTests"
        ),
        .testTarget(
            name: "SwitchboardTests",
            dependencies: [
                "SwitchboardCore", "SwitchboardStore", "SwitchboardRuntime", "SwitchboardHTTP",
                "SwitchboardDelivery", "SwitchboardSystemd", "SwitchboardDaemon", "WebhookAdapter", "LineAdapter",
                "MetaAdapter", "WhatsAppAdapter", "MessengerAdapter", "InstagramAdapter", "EmailAdapter", "EmailParsing", "WebchatAdapter",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdWSClient", package: "hummingbird-websocket"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            path: "Tests/SwitchboardTests"
        ),
    ],
    swiftLanguageModes: [.v6]
)
