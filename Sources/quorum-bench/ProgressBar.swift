import Foundation

/// A one-line progress bar on stderr, redrawn five times a second while a run goes on. Only used when stderr
/// is a terminal, so logs and scripted runs stay clean. Progress is whichever cap is nearer: requests or time.
struct ProgressBar: Sendable {
    let total: Int
    let duration: Double
    let width = 30

    init(settings: BenchSettings) {
        total = settings.total
        duration = settings.duration
    }

    func run(counters: Counters, start: UInt64) async {
        while !Task.isCancelled {
            draw(counters: counters, start: start, final: false)
            try? await Task.sleep(for: .milliseconds(200))
        }
        draw(counters: counters, start: start, final: true)
    }

    private func draw(counters: Counters, start: UInt64, final: Bool) {
        let done = counters.completed.load(ordering: .relaxed)
        let elapsed = Double(nowNanos() - start) / 1e9
        let fraction = min(1, max(Double(done) / Double(max(1, total)), elapsed / duration))
        let filled = Int(fraction * Double(width))
        let bar = String(repeating: "=", count: filled) + (filled < width ? ">" : "")
            + String(repeating: " ", count: max(0, width - filled - 1))
        let rate = elapsed > 0 ? Double(done) / elapsed : 0
        let line =
            "\r[\(bar)] " + String(format: "%5.1f%%  %d/%d  %.0f req/s  %.1f s", fraction * 100, done, total, rate, elapsed)
        FileHandle.standardError.write(Data((line + (final ? "\n" : "")).utf8))
    }
}
