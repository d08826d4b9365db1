import NIOCore
import NIOPosix
import Node
import Synchronization

/// The Raft loop on a SwiftNIO event loop: the one that also owns every peer connection (the peer listeners
/// accept onto it and `RaftLink` dials from it), so Raft messages are read into Raft and written out of it on
/// one thread. The loop blocks on the log's fsync like a dedicated thread would; nothing else lives on it.
final class EventLoopRaftLoop: SerialLoop {
    let eventLoop: any EventLoop
    private let ticker = Mutex<RepeatedTask?>(nil)

    init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    func execute(_ work: @escaping @Sendable () -> Void) {
        eventLoop.execute(work)
    }

    func schedule(every interval: Duration, _ tick: @escaping @Sendable () -> Void) {
        let amount = TimeAmount.nanoseconds(
            interval.components.seconds * 1_000_000_000 + interval.components.attoseconds / 1_000_000_000)
        let task = eventLoop.scheduleRepeatedTask(initialDelay: amount, delay: amount) { _ in tick() }
        ticker.withLock { $0 = task }
    }

    var inLoop: Bool { eventLoop.inEventLoop }

    func stop() {
        ticker.withLock { $0 }?.cancel()
    }
}
