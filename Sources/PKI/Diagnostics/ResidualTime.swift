import Foundation

/// Time-left formatting as kubeadm's `certs check-expiration` prints it ("364d", "23h", "59m", "9y"), so the table
/// reads the same as the one Kubernetes operators already know.
public enum ResidualTime {
    public static func format(_ interval: TimeInterval) -> String {
        let seconds = Int(interval.rounded(.down))
        if seconds < 0 { return "expired" }
        if seconds < 60 { return "\(seconds)s" }
        let minutes = seconds / 60
        if minutes < 60 { return "\(minutes)m" }
        let hours = Int((interval / 3_600).rounded())
        if hours < 24 { return "\(hours)h" }
        // Days are truncated like kubeadm's ("364d" for a one-year certificate issued a moment ago), never "0y".
        if interval < 365 * 86_400 { return "\(max(1, Int(interval / 86_400)))d" }
        return "\(Int(interval / 3_600 / 24 / 365))y"
    }
}
