//go:build race

package exchimport

// raceDetector tells whether the tests run under -race, which makes the
// XML tokenizer several times slower.
const raceDetector = true
