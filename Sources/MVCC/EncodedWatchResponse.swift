import EtcdProto
import SwiftProtobuf

/// A `WatchResponse` of events in protobuf wire form, assembled from parts that every watcher of a batch shares.
///
/// A put to a key with a hundred watchers used to build a hundred response messages and serialize the event a
/// hundred times (a third of the server's CPU per watched put). The wire form of a response is the concatenation
/// of its fields in any order, so the hub serializes the header and each event once per batch
/// (`WatchResponseParts`) and a watcher's response is those shared byte arrays plus its own watch id: building it
/// copies nothing, and the writer copies each part once, straight into the outgoing frame.
public struct EncodedWatchResponse: Sendable {
    /// Field 1 (`header`), tag and length included.
    let header: [UInt8]
    let watchID: Int64
    /// Field 11 (`events`) once per event, tag and length included.
    let events: [[UInt8]]
    /// The serialized size: what the gRPC length prefix announces.
    public let byteCount: Int

    init(header: [UInt8], watchID: Int64, events: [[UInt8]]) {
        self.header = header
        self.watchID = watchID
        self.events = events
        var count = header.count + Self.watchIDFieldSize(watchID)
        for event in events { count += event.count }
        byteCount = count
    }

    /// Calls `body` with each piece of the serialized response in order; their concatenation is `byteCount` bytes.
    public func forEachPart(_ body: (UnsafeRawBufferPointer) -> Void) {
        header.withUnsafeBytes(body)
        if watchID != 0 {
            // Field 2, varint: proto3 leaves out a zero id, as the message encoder does.
            var field: (UInt64, UInt64) = (0, 0)
            withUnsafeMutableBytes(of: &field) { raw in
                raw[0] = 0x10
                let end = WireBytes.writeVarint(UInt64(bitPattern: watchID), into: raw, at: 1)
                body(UnsafeRawBufferPointer(rebasing: raw[0..<end]))
            }
        }
        for event in events { event.withUnsafeBytes(body) }
    }

    /// The serialized response as one array (tests, and a consumer that wants the message back).
    public var bytes: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(byteCount)
        forEachPart { out.append(contentsOf: $0) }
        return out
    }

    static func watchIDFieldSize(_ id: Int64) -> Int {
        id == 0 ? 0 : 1 + WireBytes.varintSize(UInt64(bitPattern: id))
    }
}

/// The shared parts of one published batch: the header and each event (with and without its previous value)
/// serialized on first use, so each costs one encoding however many watchers receive it.
struct WatchResponseParts {
    let headerMessage: Etcdserverpb_ResponseHeader
    private let events: [Mvccpb_Event]
    private var header: [UInt8]?
    /// Index `2 * i` is event i as published, `2 * i + 1` the same event without `prev_kv`.
    private var encoded: [[UInt8]?]
    /// The one-element event lists of a single-event batch, shared by every watcher's response.
    private var single: [[[UInt8]]?] = [nil, nil]

    init(header: Etcdserverpb_ResponseHeader, events: [Mvccpb_Event]) {
        headerMessage = header
        self.events = events
        encoded = Array(repeating: nil, count: events.count * 2)
    }

    /// Event `index` as the watcher should see it: without its previous value unless the watcher asked for it.
    static func variant(_ index: Int, of event: Mvccpb_Event, prevKV: Bool) -> Int {
        prevKV || !event.hasPrevKv ? 2 * index : 2 * index + 1
    }

    /// The event variant as a message (for consumers that take messages).
    func message(_ variant: Int) -> Mvccpb_Event {
        var event = events[variant / 2]
        if variant % 2 == 1 { event.clearPrevKv() }
        return event
    }

    /// A response carrying `variants` for `watchID`; nil only if the message encoder refused (it cannot for
    /// proto3 messages), in which case the caller sends messages instead.
    mutating func response(watchID: Int64, variants: some Collection<Int>) -> EncodedWatchResponse? {
        guard let header = headerField() else { return nil }
        var fields: [[UInt8]]
        if events.count == 1, let slot = variants.first, variants.count == 1 {
            if let shared = single[slot] {
                fields = shared
            } else {
                guard let field = eventField(slot) else { return nil }
                fields = [field]
                single[slot] = fields
            }
        } else {
            fields = []
            fields.reserveCapacity(variants.count)
            for variant in variants {
                guard let field = eventField(variant) else { return nil }
                fields.append(field)
            }
        }
        return EncodedWatchResponse(header: header, watchID: watchID, events: fields)
    }

    private mutating func headerField() -> [UInt8]? {
        if let header { return header }
        guard let field = WireBytes.lengthDelimitedField(tag: 0x0A, headerMessage) else { return nil }
        header = field
        return field
    }

    private mutating func eventField(_ variant: Int) -> [UInt8]? {
        if let field = encoded[variant] { return field }
        guard let field = WireBytes.lengthDelimitedField(tag: 0x5A, message(variant)) else { return nil }
        encoded[variant] = field
        return field
    }
}

/// The few pieces of the protobuf wire format the hub writes by hand.
enum WireBytes {
    static func varintSize(_ value: UInt64) -> Int {
        var value = value
        var size = 1
        while value >= 0x80 {
            value >>= 7
            size += 1
        }
        return size
    }

    /// Writes `value` as a varint at `offset`; returns the offset after it.
    static func writeVarint(_ value: UInt64, into raw: UnsafeMutableRawBufferPointer, at offset: Int) -> Int {
        var value = value
        var offset = offset
        while value >= 0x80 {
            raw[offset] = UInt8(truncatingIfNeeded: value) | 0x80
            value >>= 7
            offset += 1
        }
        raw[offset] = UInt8(value)
        return offset + 1
    }

    /// `message` serialized as a length-delimited field whose one-byte tag is `tag`.
    static func lengthDelimitedField(tag: UInt8, _ message: some SwiftProtobuf.Message) -> [UInt8]? {
        guard let body: [UInt8] = try? message.serializedBytes() else { return nil }
        var field: [UInt8] = []
        field.reserveCapacity(1 + varintSize(UInt64(body.count)) + body.count)
        field.append(tag)
        withUnsafeTemporaryAllocation(byteCount: 10, alignment: 1) { raw in
            let end = writeVarint(UInt64(body.count), into: raw, at: 0)
            field.append(contentsOf: UnsafeRawBufferPointer(rebasing: raw[0..<end]))
        }
        field.append(contentsOf: body)
        return field
    }
}
