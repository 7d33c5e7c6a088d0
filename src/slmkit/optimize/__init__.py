"""Choose and shrink a model: the catalog, "will it fit?" sizing, recommendations,
quantization, HF-to-GGUF conversion and quality evaluation (`slm catalog`, `fit`,
`recommend`, `quantize`, `convert`, `eval`)."""
