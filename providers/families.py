"""The families of well-known models and their vendors' names, for the identity-leak check.

An answer that says "I am Claude" names its model as surely as one that says its registry name
"claude-sonnet-4-5". A model belongs to a family when one of its own names (name, label,
organisation, upstream id) says one of the family's `marks`; an answer then leaks when it says any
of the family's `words`. Words that are also common English (Meta, Phi, Yi, GLM) are listed only
in the forms that name the model ("Meta AI", "Phi-3", "Yi-34B"), so that an answer about HTML
`<meta>` tags or the Greek letter is not taken for a leak; the marks may be bare, since they are
matched against model ids, not answers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from providers.text import names_itself


@dataclass(frozen=True)
class Family:
    words: tuple[str, ...]  # what an answer says when it names the family or its maker
    marks: tuple[str, ...] = ()  # further words in a model's own names that place it in the family


FAMILIES: tuple[Family, ...] = (
    Family(("Claude", "Anthropic")),
    Family(("ChatGPT", "GPT", "OpenAI", "Open AI")),
    Family(("Gemini", "Gemma", "Bard", "PaLM", "Google", "DeepMind")),
    Family(("Llama", "Meta AI", "Meta's", "by Meta", "at Meta", "Meta Platforms"), marks=("meta",)),
    Family(("Qwen", "QwQ", "Tongyi", "Qianwen", "Alibaba")),
    Family(("Mistral", "Mixtral", "Codestral", "Ministral", "Pixtral", "Magistral", "Le Chat")),
    Family(("DeepSeek",)),
    Family(("Grok", "xAI")),
    Family(("Phi-1", "Phi-2", "Phi-3", "Phi-4", "Phi-5", "Microsoft"), marks=("phi",)),
    Family(("Command R", "Cohere", "Aya Expanse", "Aya Vision")),
    Family(("Yi-Large", "Yi-Lightning", "Yi-34B", "Yi-9B", "Yi-6B", "Yi-1.5", "01.AI"), marks=("yi",)),
    Family(("ChatGLM", "GLM-4", "GLM-4.5", "Zhipu", "Z.ai"), marks=("glm",)),
    Family(("Kimi", "Moonshot AI")),
    Family(("ERNIE", "Baidu", "Wenxin")),
    Family(("Hunyuan", "Tencent")),
    Family(("Doubao", "ByteDance")),
    Family(("MiniMax",)),
    Family(("Nemotron", "NVIDIA")),
    Family(("Amazon Nova", "Nova Pro", "Nova Lite", "Nova Micro", "Amazon"), marks=("nova",)),
    Family(("Granite", "IBM")),
    Family(("Jamba", "AI21")),
    Family(("Reka",)),
)


def family_words(names: Iterable[str]) -> set[str]:
    """The words of every family that one of `names` (a model's own names) places it in."""
    names = list(names)
    return {
        word
        for family in FAMILIES
        if any(names_itself(name, family.words + family.marks) for name in names)
        for word in family.words
    }
