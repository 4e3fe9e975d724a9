import tempfile
from pathlib import Path

import torch

from retriever.encoders import load_sentence_transformer
from retriever.encoders.soft_tokens import add_soft_tokens
from training.config import TrainConfig
from training.soft_tokens import LearnableScale, train_soft_tokens, trainable_parameters


def test_trainable_count_and_hand_made_batch_layout(tiny_model_dir: Path) -> None:
    model = add_soft_tokens(load_sentence_transformer(str(tiny_model_dir)), soft_tokens=3, soft_layers=2)
    assert trainable_parameters(model, LearnableScale()) == 3 * 32 * 2 + 2
    features = model.tokenize(["a b", "a b c d"])
    ids, mask, positions = features["input_ids"], features["attention_mask"], features["position_ids"]
    unk = model[0].tokenizer.unk_token_id
    assert ids[:, 1:4].eq(unk).all() and ids[:, 0].eq(model[0].tokenizer.cls_token_id).all()
    # real tokens keep their positions; soft tokens sit at position 0 and are attended to
    assert positions[1].tolist() == [0, 0, 0, 0, 1, 2, 3, 4, 5]
    assert mask[0].tolist() == [1, 1, 1, 1, 1, 1, 1, 0, 0] and mask[1].tolist() == [1] * 9
    out = model[0](dict(features))
    pooled_mask = out["attention_mask"]
    assert pooled_mask[0].tolist() == [1, 0, 0, 0, 1, 1, 1, 0, 0]  # pooling ignores soft tokens and padding
    embedding = model(dict(model.tokenize(["a b"])))["sentence_embedding"][0]
    tokens = out["token_embeddings"][0]
    torch.testing.assert_close(embedding, tokens[[0, 4, 5, 6]].mean(0))


def test_zeroed_and_masked_soft_tokens_reproduce_the_base_model(tiny_model_dir: Path) -> None:
    texts = ["short", "a longer text with several words in it"]
    base = load_sentence_transformer(str(tiny_model_dir)).encode(texts, convert_to_tensor=True)
    model = add_soft_tokens(load_sentence_transformer(str(tiny_model_dir)), soft_tokens=4, soft_layers=2)
    assert (model.encode(texts, convert_to_tensor=True) - base).abs().max() > 1e-4  # the tokens do act
    model[0].soft_mask_value = 0
    with torch.no_grad():
        model[0].prompts.zero_()
    torch.testing.assert_close(model.encode(texts, convert_to_tensor=True), base, atol=1e-5, rtol=1e-5)


def test_training_moves_only_soft_tokens_and_round_trips(tiny_dir: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    backbone = {k: v.clone() for k, v in load_sentence_transformer(str(tiny_model_dir)).state_dict().items()}
    config = TrainConfig(method="soft-tokens", data=str(tiny_dir), model=str(tiny_model_dir), batch_size=3,
                         epochs=2, learning_rate=5e-2, soft_tokens=2, soft_layers=2, side="both",
                         output=tmp_path / "soft", max_seq_length=32)
    summary = train_soft_tokens(config)
    assert summary["trainable_params"] == 2 * 32 * 2 + 2
    trained = load_sentence_transformer(str(tmp_path / "soft"))
    state = trained.state_dict()
    for name, tensor in backbone.items():
        assert torch.equal(state[name], tensor), name  # the backbone is bit-identical
    prompts = trained[0].prompts
    start = backbone["0.model.embeddings.word_embeddings.weight"][1000:1002]
    assert prompts.shape == (2, 2, 32) and not torch.equal(prompts[0], start)  # the soft tokens learned
    with tempfile.TemporaryDirectory() as tmp:
        trained.save(tmp)
        again = load_sentence_transformer(tmp)
        torch.testing.assert_close(again.encode(["x y"], convert_to_tensor=True),
                                   trained.encode(["x y"], convert_to_tensor=True))
