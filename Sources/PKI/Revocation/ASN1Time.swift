import Foundation
import SwiftASN1

/// X.509 `Time` (UTCTime before 2050, GeneralizedTime from 2050 on, RFC 5280 §4.1.2.5) for the CRL codec, which
/// swift-certificates does not cover.
enum ASN1Time {
    static func isTime(_ node: ASN1Node) -> Bool {
        node.identifier == .utcTime || node.identifier == .generalizedTime
    }

    static func date(from node: ASN1Node) throws -> Date {
        let components: DateComponents
        if node.identifier == .utcTime {
            let time = try UTCTime(derEncoded: node)
            components = DateComponents(
                year: time.year, month: time.month, day: time.day,
                hour: time.hours, minute: time.minutes, second: time.seconds
            )
        } else if node.identifier == .generalizedTime {
            let time = try GeneralizedTime(derEncoded: node)
            components = DateComponents(
                year: time.year, month: time.month, day: time.day,
                hour: time.hours, minute: time.minutes, second: time.seconds
            )
        } else {
            throw ASN1Error.unexpectedFieldType(node.identifier)
        }
        guard let date = Calendar.utc.date(from: components) else {
            throw ASN1Error.invalidASN1Object(reason: "time out of range")
        }
        return date
    }

    static func serialize(_ date: Date, into coder: inout DER.Serializer) throws {
        let parts = Calendar.utc.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        let (year, month, day) = (parts.year ?? 1970, parts.month ?? 1, parts.day ?? 1)
        let (hours, minutes, seconds) = (parts.hour ?? 0, parts.minute ?? 0, parts.second ?? 0)
        if (1950..<2050).contains(year) {
            try coder.serialize(
                UTCTime(year: year, month: month, day: day, hours: hours, minutes: minutes, seconds: seconds)
            )
        } else {
            try coder.serialize(
                GeneralizedTime(
                    year: year, month: month, day: day, hours: hours, minutes: minutes, seconds: seconds,
                    fractionalSeconds: 0
                )
            )
        }
    }
}
