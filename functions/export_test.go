package functions

// ExampleModule builds examples/functions/anomaly for the external tests.
var ExampleModule = exampleModule
