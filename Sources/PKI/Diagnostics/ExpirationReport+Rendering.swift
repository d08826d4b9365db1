import Foundation

extension ExpirationReport {
    static let headers = [
        "CERTIFICATE", "SUBJECT", "SERIAL", "EXPIRES", "RESIDUAL TIME", "CERTIFICATE AUTHORITY", "MANAGED", "STATUS",
    ]

    /// An aligned text table in kubeadm's style (`Jan 02, 2026 15:04 UTC`, `364d`).
    public func renderTable() -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "MMM dd, yyyy HH:mm 'UTC'"
        let lines = rows.map { row -> [String] in
            [
                row.name, row.subject ?? "-", row.serialHex ?? "-", row.notAfter.map(formatter.string(from:)) ?? "-",
                row.residualTime ?? "-", row.certificateAuthority ?? "-",
                managedText(row), row.status.rawValue,
            ]
        }
        return TextTable.render(header: Self.headers, rows: lines)
    }

    private func managedText(_ row: Row) -> String {
        if let managed = row.managed { return managed ? "yes" : "no" }
        return row.notAfter == nil ? "-" : "unknown"
    }

    /// Pretty JSON with RFC 3339 dates and sorted keys, stable for scripts and diffing.
    public func renderJSON() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }
}

/// Left-aligned columns separated by three spaces, the way kubeadm and kubectl print tables.
enum TextTable {
    static func render(header: [String], rows: [[String]]) -> String {
        let all = [header] + rows
        let widths = header.indices.map { column in all.map { $0[column].count }.max() ?? 0 }
        return all.map { cells in
            cells.enumerated().map { column, cell in
                column == cells.count - 1 ? cell : cell.padding(toLength: widths[column], withPad: " ", startingAt: 0)
            }.joined(separator: "   ")
        }.joined(separator: "\n") + "\n"
    }
}
