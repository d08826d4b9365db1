import Bolt

/// Everything in a file, bucket by bucket, read through the public reader API.
func dumpAll(_ reader: BoltReader) throws -> [[UInt8]: [BoltEntry]] {
    var all: [[UInt8]: [BoltEntry]] = [:]
    for name in try reader.bucketNames() {
        var cursor = try reader.cursor(bucket: name)
        var entries: [BoltEntry] = []
        while let entry = try cursor.next() { entries.append(entry) }
        all[name] = entries
    }
    return all
}

/// Opens and reads every bucket; returns the error if any step fails.
func readEverything(_ path: String) -> BoltError? {
    do throws(BoltError) {
        let reader = try BoltReader(path: path)
        for name in try reader.bucketNames() {
            var cursor = try reader.cursor(bucket: name)
            while try cursor.next() != nil {}
        }
        _ = try reader.check()
        return nil
    } catch {
        return error
    }
}

extension Array where Element == UInt8 {
    init(_ string: String) { self = Array(string.utf8) }
}
