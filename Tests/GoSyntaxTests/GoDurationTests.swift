import GoSyntax
import Testing

/// Durations read and written as Go's `time` package does: etcd's duration flags, its JWT `ttl=` option and its logs.
struct GoDurationTests {
    @Test(arguments: [
        ("0", Duration.zero), ("5m", .seconds(300)), ("1h30m", .seconds(5400)), ("1.5s", .milliseconds(1500)),
        ("-2m", .seconds(-120)), ("+3s", .seconds(3)), ("300ms", .milliseconds(300)), ("2us", .microseconds(2)),
        ("2µs", .microseconds(2)), ("2μs", .microseconds(2)), ("7ns", .nanoseconds(7)), (".5s", .milliseconds(500)),
        ("1.h", .seconds(3600)), ("1.5h", .seconds(5400)), ("0.000000001s", .nanoseconds(1)),
        ("2562047h", .seconds(2_562_047 * 3600)),
    ])
    func parsesWhatGoParses(text: String, expected: Duration) {
        #expect(GoDuration.parse(text) == expected)
    }

    @Test(arguments: [
        "", "5", "m", "1x", "1.s.", ".s", "-", "5m5", "9999999999999h", "1 m", " 5s", "5s ", "1e3s", "2562048h",
    ])
    func refusesWhatGoRefuses(text: String) {
        #expect(GoDuration.parse(text) == nil)
    }

    @Test(arguments: [
        (Duration.zero, "0s"), (.nanoseconds(7), "7ns"), (.nanoseconds(1500), "1.5µs"), (.milliseconds(250), "250ms"),
        (.seconds(1), "1s"), (.milliseconds(1500), "1.5s"), (.seconds(60), "1m0s"), (.seconds(3723), "1h2m3s"),
        (.milliseconds(3_723_500), "1h2m3.5s"), (.seconds(-90), "-1m30s"),
    ])
    func printsAsGoPrints(duration: Duration, text: String) {
        #expect(GoDuration.format(duration) == text)
    }

    @Test(arguments: ["1h2m3.5s", "250ms", "1.5µs", "7ns", "-1m30s"])
    func readsBackWhatItPrints(text: String) throws {
        let duration = try #require(GoDuration.parse(text))
        #expect(GoDuration.format(duration) == text)
    }
}
