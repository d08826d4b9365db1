import Testing

@testable import RPCTransport

/// How an HTTP request target splits into a path and query parameters, on HTTP/1.1 and HTTP over HTTP/2 alike.
@Suite struct HTTPRequestTargetTests {
    @Test func pathAndParameters() {
        let (path, query) = HTTPEndpointHandler.split("/health?serializable=true&exclude=NOSPACE&exclude=CORRUPT")
        #expect(path == "/health")
        #expect(query == ["serializable": ["true"], "exclude": ["NOSPACE", "CORRUPT"]])
        #expect(HTTPEndpointHandler.split("/readyz?verbose").1 == ["verbose": [""]])
        #expect(HTTPEndpointHandler.split("/version").1 == [:])
    }

    /// `GET /health?=` trapped the member: one request from any client, on the client port (found while writing the
    /// http fuzz target; its reproducers are in Tests/FuzzTests/Regressions/http/). Empty names and values are kept,
    /// as Go's url.ParseQuery keeps them.
    @Test func emptyNamesAndValuesAreParametersLikeAnyOther() {
        #expect(HTTPEndpointHandler.split("/health?=").1 == ["": [""]])
        #expect(HTTPEndpointHandler.split("/health?=b&a=&&c").1 == ["": ["b"], "a": [""], "c": [""]])
        #expect(HTTPEndpointHandler.split("/health?==").1 == ["": ["="]])
    }
}
