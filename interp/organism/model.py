"""The organism's model: a real ``transformers`` LLaVA (tiny CLIP vision tower + tiny Llama).

The tokenizer is word level (a ``PreTrainedTokenizerFast`` over a ``tokenizers`` WordLevel
model, lower-casing, punctuation split off) with a vocabulary of every word the world, the
corpus, the organism benchmarks and :func:`interp.data.vqa_templates.all_questions` use. The
chat template and the image token layout are LLaVA-1.5's, so ``load_vlm`` loads the folder like
any LLaVA checkpoint.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import torch
import transformers
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from interp.data.vqa_templates import all_questions
from interp.models.families.llava import LLAVA_TEMPLATE
from interp.organism import corpus, world
from interp.organism.config import OrganismModelConfig

SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<image>", "[unk]")
_WORD = re.compile(r"\w+|[^\w\s]")


def words_of(text: str) -> list[str]:
    """The organism tokenizer's split of ``text`` (lower-cased words and single punctuation)."""
    return _WORD.findall(text.lower())


def vocabulary() -> list[str]:
    """Every word of the world, the corpus, the benchmarks and the VQA question templates."""
    texts = corpus.corpus_texts() + all_questions()
    for kind, color, background, position, size, count in itertools.product(
        world.KINDS, world.COLORS, world.BACKGROUNDS, world.POSITIONS, world.SIZES, (1, 2)
    ):
        scene = world.Scene(kind, color, position, size, background, "photo", count)
        texts += list(world.scene_answers(scene).values())
    texts += list(world.SETTINGS.values()) + list(world.MATERIALS.values())
    texts += ["user assistant system : 1 2 3 4 5 6 7 8 9 0 tiny huge middle"]
    texts += [world.KIND_NOUN[k] for k in world.KINDS]
    words = sorted({w for text in texts for w in words_of(text)})
    return list(SPECIAL_TOKENS) + [w for w in words if w not in SPECIAL_TOKENS]


def build_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {word: index for index, word in enumerate(vocabulary())}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[unk]"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation("isolated")]
    )
    # joins words with spaces and tidies " ." -> "."; the judge re-splits, so either is fine
    backend.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    backend.add_special_tokens(list(SPECIAL_TOKENS))
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="[unk]",
        chat_template=LLAVA_TEMPLATE,
    )


def build_processor(config: OrganismModelConfig | None = None) -> transformers.LlavaProcessor:
    config = config or OrganismModelConfig()
    size = config.image_size
    image_processor = transformers.CLIPImageProcessor(
        size={"shortest_edge": size}, crop_size={"height": size, "width": size}
    )
    return transformers.LlavaProcessor(
        image_processor=image_processor,
        tokenizer=build_tokenizer(),
        patch_size=config.patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=LLAVA_TEMPLATE,
    )


def image_tokens_per_image(config: OrganismModelConfig | None = None) -> int:
    config = config or OrganismModelConfig()
    return (config.image_size // config.patch_size) ** 2


def build_model(
    tokenizer: PreTrainedTokenizerFast, config: OrganismModelConfig | None = None, seed: int = 0
) -> transformers.LlavaForConditionalGeneration:
    """A randomly initialised organism (seeded)."""
    config = config or OrganismModelConfig()
    ids = tokenizer.convert_tokens_to_ids
    llava = transformers.LlavaConfig(
        vision_config=transformers.CLIPVisionConfig(
            image_size=config.image_size,
            patch_size=config.patch_size,
            hidden_size=config.vision_hidden,
            intermediate_size=config.vision_hidden * 2,
            num_hidden_layers=config.vision_layers,
            num_attention_heads=config.vision_heads,
            projection_dim=config.vision_hidden,
        ),
        text_config=transformers.LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=config.hidden_size,
            intermediate_size=config.intermediate_size,
            num_hidden_layers=config.num_layers,
            num_attention_heads=config.num_heads,
            num_key_value_heads=config.num_heads,
            max_position_embeddings=config.max_positions,
            tie_word_embeddings=True,
            bos_token_id=ids("<s>"),
            eos_token_id=ids("</s>"),
            pad_token_id=ids("<pad>"),
        ),
        image_token_id=ids("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
        tie_word_embeddings=True,
    )
    llava.architectures = ["LlavaForConditionalGeneration"]
    torch.manual_seed(seed)
    return transformers.LlavaForConditionalGeneration(llava)


def save_organism(model, processor, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    return out
