import Foundation

/// RFC 3339 timestamps in UTC (`2025-01-02T03:04:05Z`), the format etcd and Go print, for every message and report.
public enum RFC3339 {
    public static func string(_ date: Date) -> String {
        date.formatted(.iso8601)
    }

    public static func date(_ text: String) -> Date? {
        try? Date(text, strategy: .iso8601)
    }
}
