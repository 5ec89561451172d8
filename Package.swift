// swift-tools-version:6.0
import PackageDescription

// Module layout (see README "Code map"): dependencies point one way, from the
// executables down to the pure domain core, which imports nothing of ours.
let package = Package(
    name: "creditd",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "creditd", targets: ["creditd"]),
        .executable(name: "creditctl", targets: ["creditctl"]),
        .library(name: "CreditClient", targets: ["CreditClient"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-protobuf", exact: "1.39.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
    ],
    targets: [
        // Pure billing rules: money, civil dates, periods, proration, credits. (CCreditSystem
        // only for its prefetch hint, used by the copy-on-write containers.)
        .target(name: "CreditDomain", dependencies: ["CCreditSystem"]),
        // The protobuf wire format written by hand: the snapshot encoding and the large responses.
        .target(name: "ProtoWire"),
        // The ledger's snapshot encoding (tagged, versioned; reads the previous versions).
        .target(name: "LedgerEncoding", dependencies: ["CreditDomain", "ProtoWire"]),
        // Messages generated from proto/ (scripts/generate-proto.sh).
        .target(
            name: "CreditProto",
            dependencies: [.product(name: "SwiftProtobuf", package: "swift-protobuf")]
        ),
        // ttrpc framing, envelope and status codes; no sockets.
        .target(
            name: "CreditWire",
            dependencies: [
                "CreditProto",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]
        ),
        // Journal, snapshots and recovery on real files; the store interface (JournalStore).
        .target(name: "CreditStore", dependencies: ["CCRC32C", "CCreditSystem"]),
        // CRC-32C with the CPU's crc32 instruction (x86-64 SSE 4.2), which Swift cannot name.
        .target(name: "CCRC32C"),
        // The same interface on PostgreSQL, for hosts sharing one database: a fenced writer
        // lease, a journal table, chunked snapshots, and standby replay.
        .target(
            name: "CreditPostgresStore",
            dependencies: [
                "CreditStore",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Small C declarations Swift's Glibc module lacks (struct ucred).
        .target(name: "CCreditSystem"),
        // sd_notify, socket activation and journald logging without libsystemd.
        .target(
            name: "SystemdSupport",
            dependencies: [
                "CCreditSystem",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // NIO server: Unix socket, peer credentials, dispatch, limits.
        .target(
            name: "CreditServer",
            dependencies: [
                "CreditWire", "CreditProto", "CCreditSystem", "JSONCheck",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]
        ),
        // The daemon's application layer: ledger actor, handlers, persistence wiring.
        .target(
            name: "CreditService",
            dependencies: [
                "CreditDomain", "LedgerEncoding", "ProtoWire", "CreditStore", "CreditServer", "CreditWire", "CreditProto",
                "CreditMonitoring", "SystemdSupport", "CCreditSystem",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        // Swift client used by creditctl and the tests.
        .target(
            name: "CreditClient",
            dependencies: [
                "CreditWire", "CreditProto",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]
        ),
        // Nagios ranges and perfdata, Prometheus text exposition.
        .target(name: "CreditMonitoring"),
        // JSON syntax errors with line and column, and keys given twice: config files, imports.
        .target(name: "JSONCheck"),
        // The system protobuf-c runtime, for the C client.
        .systemLibrary(
            name: "CProtobufC",
            pkgConfig: "libprotobuf-c",
            providers: [.apt(["libprotobuf-c-dev"])]
        ),
        // libcreditd-client, the C client (also built by clients/c/Makefile).
        .target(
            name: "CCreditClient",
            dependencies: ["CProtobufC"],
            cSettings: [.headerSearchPath("proto")]
        ),
        .executableTarget(
            name: "creditd",
            dependencies: [
                "CreditService", "CreditServer", "SystemdSupport", "CreditStore", "CreditPostgresStore", "CreditWire",
                "CreditProto", "CreditDomain", "CreditMonitoring",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(
            name: "creditctl",
            dependencies: [
                "CreditClient", "CreditMonitoring", "CreditProto", "CreditDomain", "JSONCheck",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // libFuzzer targets (FUZZING.md, scripts/fuzz.sh); a plain build links an inert main.
        .executableTarget(
            name: "FuzzFrames",
            dependencies: [
                "CreditWire", "CreditProto",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]
        ),
        .executableTarget(
            name: "FuzzDispatch",
            dependencies: [
                "CreditService", "CreditDomain", "CreditWire", "CreditProto",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]
        ),
        .executableTarget(name: "FuzzState", dependencies: ["CreditService", "CreditDomain", "CreditProto"]),
        // Load generator and baselines (BENCHMARKS.md); build with -c release.
        .executableTarget(
            name: "creditbench",
            dependencies: [
                "CreditWire", "CreditProto", "CreditStore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ]
        ),
        // Helpers shared by the test targets: the daemon launcher, the creditctl runner, temporary
        // directories, the scrubbed environment, raw ttrpc frames.
        .target(
            name: "CreditTestSupport",
            dependencies: [
                "CreditWire", "CreditProto",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            path: "Tests/CreditTestSupport"
        ),
        // Random ledgers for the tests that must hold for any state (codec, response encoders).
        .target(name: "LedgerScenarios", dependencies: ["CreditDomain"], path: "Tests/LedgerScenarios"),
        // Also the ledger encoding's tests, which build their states with the domain's test helpers.
        .testTarget(name: "CreditDomainTests", dependencies: ["CreditDomain", "LedgerEncoding", "LedgerScenarios"]),
        .testTarget(
            name: "CreditWireTests",
            dependencies: ["CreditWire", "CreditProto", .product(name: "NIOCore", package: "swift-nio")]
        ),
        // Golden/ holds on-disk format files read through #filePath, not resources.
        .testTarget(name: "CreditStoreTests", dependencies: ["CreditStore", "CreditTestSupport"], exclude: ["Golden"]),
        // The store contract against both stores, and the lease fence, on a throwaway PostgreSQL.
        .testTarget(
            name: "CreditPostgresStoreTests",
            dependencies: ["CreditStore", "CreditPostgresStore", "CreditTestSupport",
                           .product(name: "Logging", package: "swift-log"),
                           .product(name: "NIOCore", package: "swift-nio")]
        ),
        .testTarget(
            name: "CreditServiceTests",
            dependencies: ["CreditService", "CreditDomain", "CreditStore", "CreditProto", "CreditWire",
                           "CreditTestSupport", "LedgerScenarios", "ProtoWire", .product(name: "Logging", package: "swift-log")],
            // Golden/ holds state directories read through #filePath, not resources.
            exclude: ["Golden"]
        ),
        .testTarget(name: "CreditMonitoringTests", dependencies: ["CreditMonitoring", "CreditTestSupport"]),
        // The connection handler's limits in process, on NIO's EmbeddedChannel; reply
        // batching on real event loops.
        .testTarget(
            name: "CreditServerTests",
            dependencies: [
                "CreditServer", "CreditWire", "CreditProto",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]
        ),
        .testTarget(name: "SystemdSupportTests", dependencies: ["SystemdSupport", "CreditTestSupport"]),
        // The C client against fake servers, its C suite, and the real daemon.
        .testTarget(
            name: "CClientTests",
            dependencies: [
                "CCreditClient", "CreditProto", "CreditClient", "CreditWire", "CreditTestSupport",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]
        ),
        // End-to-end: the real creditd binary on a real Unix socket.
        .testTarget(
            name: "EndToEndTests",
            dependencies: [
                "CreditClient", "CreditWire", "CreditProto", "CreditDomain", "CreditTestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
