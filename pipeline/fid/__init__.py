"""FID: streaming statistics (`stats`), reference files and reports (`reference`), feature extractors
(`extractors` by name, `features`), image sources (`sources`) and the Ray fan-out (`job`)."""
