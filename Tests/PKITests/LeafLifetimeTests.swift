import Foundation
import Testing

@testable import PKI

@Suite("--pki-leaf-validity parsing")
struct LeafLifetimeTests {
    @Test(
        "valid Go-style and day/year durations",
        arguments: [
            ("8760h", 31_536_000.0), ("90m", 5_400), ("30s", 30), ("1h30m", 5_400), ("1.5h", 5_400),
            ("90d", 7_776_000), ("1y", 31_536_000), ("2y12h", 63_115_200), ("1500ms", 1.5), ("+1s", 1),
            (" 45s ", 45),
        ])
    func valid(input: String, seconds: Double) throws {
        #expect(try LeafLifetime(parsing: input).seconds == seconds)
    }

    @Test(
        "invalid durations explain themselves",
        arguments: [
            ("", "empty duration"), ("100", "missing unit"), ("10x", "unknown unit \"x\""), ("-5m", "must be positive"),
            ("0s", "must be positive"), ("500ms", "at least 1s"), ("h", "expected a number"),
            ("1..5h", "expected a number"),
            ("1h-30m", "expected a number"), ("99999y", "too large"),
        ])
    func invalid(input: String, fragment: String) {
        #expect {
            try LeafLifetime(parsing: input)
        } throws: { error in
            let message = "\(error)"
            return message.hasPrefix("invalid certificate validity \"\(input)\"") && message.contains(fragment)
        }
    }

    @Test("default is one year; short values warn; formatting is compact")
    func defaultsAndWarnings() throws {
        #expect(LeafLifetime.default.seconds == 365 * 86_400)
        #expect(LeafLifetime.default.warnings.isEmpty)
        #expect(LeafLifetime.default.description == "8760h")
        let short = try LeafLifetime(parsing: "90s")
        #expect(short.warnings.count == 1)
        #expect(short.warnings[0].contains("below 1h"))
        #expect(short.description == "1m30s")
        #expect(try LeafLifetime(parsing: "1h").warnings.isEmpty)
        #expect(try LeafLifetime(parsing: "1h30m").description == "1h30m")
    }
}
