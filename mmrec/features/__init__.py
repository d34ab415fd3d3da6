"""mmrec.features: frozen modality features, extracted once and cached as Parquet.

- `encoders`: the encoder registry (`build_encoder(name, modality, tokens, device)`), families
  `efficientnet-lite0`, `open_clip:<arch>:<pretrained>`, `sentence-transformers:<name|path>`,
  `hf:<name|path>[:cls|mean]`; offline weight resolution lives in `weights`.
- `extract`: batched, chunked, resumable, rank-sharded extraction of one modality.
- `store`: the Parquet layout and `load_features(path, tokens=True) -> ModalityFeatures`.
- `stage`: `run(params, root)`, the DVC `extract` stage.

Layer: may import `data` and the bottom layer (`io`, `paths`, `registry`) only.
"""
