"""What TRL 1.16's DPOTrainer needs from a PaliGemma processor, and the stock one does not give.

`trl.trainer.dpo_trainer.DataCollatorForVisionPreference` calls the processor three times per
batch: once with images and the prompts, then twice with text only, for the chosen and the rejected
completions. The stock `PaliGemmaProcessor` (transformers 5.23) refuses a call without images, and
always returns `labels`, which TRL then passes to the model a second time. This subclass:

* text-only call = completions: tokenised by the tokenizer alone, EOS appended exactly once (TRL's
  vision collator appends none), `token_type_ids` = 1 (causal). With 0 PaliGemma's prefix-LM mask
  would let the prompt attend to the completion it is scored on;
* drops `labels` when no `suffix` is given (TRL builds its own from `completion_mask`);
* `prefix_mode="cacheable"`: only the image block (+ BOS) keeps token type 0; the question is
  causal
  (uservlm_ros.model.prefix, the same switch the VLM engine uses).
"""

from __future__ import annotations

import torch
from transformers import BatchFeature, PaliGemmaProcessor


class PaliGemmaPreferenceProcessor(PaliGemmaProcessor):
    prefix_mode = "bidirectional"

    @classmethod
    def from_processor(cls, processor: PaliGemmaProcessor, prefix_mode: str = "bidirectional"):
        new = cls(
            image_processor=processor.image_processor,
            tokenizer=processor.tokenizer,
            chat_template=getattr(processor, "chat_template", None),
        )
        new.prefix_mode = prefix_mode
        return new

    def __call__(self, images=None, text=None, suffix=None, **kwargs):
        if images is None and suffix is None and text is not None:
            return self._completions(text, **kwargs)
        out = super().__call__(images=images, text=text, suffix=suffix, **kwargs)
        if suffix is None:
            out.pop("labels", None)
        if self.prefix_mode != "bidirectional" and "token_type_ids" in out:
            from training.batches import prefix_token_types

            out["token_type_ids"] = prefix_token_types(
                self,
                torch.as_tensor(out["input_ids"]),
                torch.as_tensor(out["token_type_ids"]),
                self.prefix_mode,
            )
        return out

    def _completions(
        self, text, padding=False, padding_side="right", return_tensors=None, **_
    ) -> BatchFeature:
        eos = self.tokenizer.eos_token
        texts = [text] if isinstance(text, str) else list(text)
        # A completion that already ends with the EOS string keeps that one: never two.
        texts = [t if t.endswith(eos) else t + eos for t in texts]
        encoded = self.tokenizer(
            texts,
            add_special_tokens=False,
            padding=padding,
            padding_side=padding_side,
            return_tensors=return_tensors,
        )
        ids = encoded["input_ids"]
        encoded["token_type_ids"] = (
            torch.ones_like(ids) if return_tensors == "pt" else [[1] * len(x) for x in ids]
        )
        return encoded
