import Foundation

/// One object in a listing.
public struct S3Object: Sendable, Equatable {
    public var key: String
    public var size: Int64
    public var lastModified: Date?
    public var etag: String
}

/// One page of a ListObjectsV2 answer: its objects, and the token of the next page when the listing is truncated.
public struct S3ListingPage: Sendable, Equatable {
    public var objects: [S3Object]
    public var nextContinuationToken: String?
}

/// Why a 2xx answer's body could not be used. The client wraps it into an `S3Error` naming the request.
public struct S3ResponseError: Error, Sendable, Equatable, CustomStringConvertible {
    public var description: String
}

/// Reading what an S3 server sends back: the bodies of ListObjectsV2, CreateMultipartUpload, and of errors, which
/// can arrive with any status (CompleteMultipartUpload reports failures in a 200). Pure functions of the bytes, apart
/// from the client that sends the requests, so that the whole surface a server (or anything answering on its
/// address) controls is unit-tested and fuzzed (the `s3` fuzz target) without a server.
public enum S3Responses {
    /// A ListObjectsV2 page. Entries without a `Key` are skipped; a size that is not a number reads as -1 and a date
    /// that is not RFC 3339 as nil, since neither decides anything a backup needs. A truncated page without a
    /// continuation token is refused: following it would list the first page forever.
    public static func listingPage(_ body: [UInt8]) throws(S3ResponseError) -> S3ListingPage {
        let root: XMLElement
        do {
            root = try XML.parse(body)
        } catch {
            throw S3ResponseError(description: "unreadable listing: \(error)")
        }
        var objects: [S3Object] = []
        for entry in root.children("Contents") {
            guard let key = entry.value("Key") else { continue }
            objects.append(
                S3Object(
                    key: key, size: Int64(entry.value("Size") ?? "") ?? -1,
                    lastModified: entry.value("LastModified").flatMap(RFC3339.parse),
                    etag: entry.value("ETag") ?? ""))
        }
        guard root.value("IsTruncated") == "true" else { return S3ListingPage(objects: objects) }
        guard let token = root.value("NextContinuationToken"), !token.isEmpty else {
            throw S3ResponseError(description: "truncated listing without a continuation token")
        }
        return S3ListingPage(objects: objects, nextContinuationToken: token)
    }

    /// The `UploadId` of a CreateMultipartUpload answer.
    public static func uploadID(_ body: [UInt8]) throws(S3ResponseError) -> String {
        guard let id = (try? XML.parse(body))?.value("UploadId"), !id.isEmpty else {
            throw S3ResponseError(description: "no UploadId in the response")
        }
        return id
    }

    /// True when the body is an S3 `<Error>` document, which a 200 answer to CompleteMultipartUpload can be.
    public static func isErrorDocument(_ body: [UInt8]) -> Bool {
        (try? XML.parse(body))?.localName == "Error"
    }
}

extension S3ListingPage {
    init(objects: [S3Object]) { self.init(objects: objects, nextContinuationToken: nil) }
}
