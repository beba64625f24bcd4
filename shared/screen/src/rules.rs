//! Rule table: general attack phrasing, not strings from any corpus. Compiled once.
//!
//! Latin rules are written for the skeleton view in a tiny dialect: a literal space means
//! "one or more non-word characters", and `\b` is an ASCII word boundary (the lazy DFA
//! cannot run Unicode word boundaries on non-ASCII input and would fall back to a slow
//! engine). Each Latin rule is compiled three ways: for the skeleton view, for the leet view
//! (`l` -> `i`), and squashed (no separators) for letters that were spaced apart.

use regex_automata::meta::Regex;

use super::alphabet::{Alphabet, compile, matching, reduce};
use super::normalize::leet_pattern;
use crate::error::ScreenError;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// English phrasing over the Latin skeleton (also leet, ROT13 and squashed forms).
    Latin,
    /// Exact syntax (delimiters, URLs, shell): skeleton view only, never leet-mapped.
    Syntax,
    /// Non-Latin scripts: lowercase view, confusables not folded.
    Multi,
}

pub struct Rule {
    pub id: &'static str,
    /// Evidence strength in [0, 1]; fired rules combine as a noisy-OR.
    pub weight: f32,
    pub scope: Scope,
    pub pattern: &'static str,
}

const OVERRIDE_VERB: &str = r"(?:ignore|ignoring|disregard|disregarding|forget|forgetting|override|overriding|bypass|neglect|skip|discard|abandon|drop|set aside|pay no attention to|do not follow|don't follow|dont follow|stop following|no longer follow)";
const PRIOR: &str = r"(?:previous|previously|prior|above|preceding|earlier|former|foregoing|original|initial|old|past|existing|given|all|system|safety|developer|default)";
const INSTR_NOUN: &str = r"(?:instructions?|directives?|rules|guidelines|guidance|prompts?|commands?|constraints|restrictions|programming|guardrails|policies|context|messages|orders|training|text|content|conversation|input)";

/// The rule table. Weights: 0.95 = unambiguous attack phrasing, ~0.6 = strong hint that
/// benign prompts rarely contain, <= 0.4 = weak signal that only adds up with others.
pub fn table() -> Vec<(Rule, String)> {
    let r = |id, weight, scope, pattern: &'static str| {
        (
            Rule {
                id,
                weight,
                scope,
                pattern,
            },
            pattern.to_owned(),
        )
    };
    let override_prior = format!(
        r"\b{OVERRIDE_VERB} (?:(?:all|any|every|each|the|your|my|of|these|those|that|everything|anything|what|was|is|were|said|written) )*{PRIOR} (?:(?:and|or|other) )?{INSTR_NOUN}\b"
    );
    let override_your = format!(
        r"\b{OVERRIDE_VERB} (?:all )?(?:of )?your (?:\w+ )?(?:instructions?|rules|guidelines|programming|training|restrictions|constraints|filters|safety|ethics|principles|policies|directives|limitations|core values)\b"
    );
    let mut rules: Vec<(Rule, String)> = vec![
        // --- instruction override ---
        (
            Rule {
                id: "instruction_override",
                weight: 0.95,
                scope: Scope::Latin,
                pattern: "",
            },
            override_prior,
        ),
        (
            Rule {
                id: "instruction_override",
                weight: 0.9,
                scope: Scope::Latin,
                pattern: "",
            },
            override_your,
        ),
        r(
            "instruction_override",
            0.85,
            Scope::Latin,
            r"\b(?:ignore|disregard|forget) (?:all |everything )?(?:of )?(?:that|the above|above|everything|all) (?:and|then|instead|now)\b",
        ),
        r(
            "instruction_override",
            0.8,
            Scope::Latin,
            // "ignore all previous" alone is an attack only when nothing ordinary follows it
            // ("ignore all previous emails in this thread" is not).
            r"\b(?:ignore|disregard|forget) (?:all|everything) (?:above|before|prior|previous|said|you (?:were|have been) told)(?: (?:and|then|now|instead|from now)\b|\s*[.!;:,]|\s*$)",
        ),
        r(
            "new_instructions",
            0.7,
            Scope::Latin,
            r"\b(?:new|updated|real|actual|revised|override|secret|hidden|admin|priority) (?:instructions?|task|directive|orders|rules)(?: follow| are| is)? ?:",
        ),
        r(
            "new_instructions",
            0.75,
            Scope::Latin,
            r"\byour (?:new|real|actual|true|only) (?:task|instructions?|role|goal|purpose|job|directive) (?:is|are|will be|now)\b",
        ),
        r(
            "new_instructions",
            0.6,
            Scope::Latin,
            r"\bfrom now on,? (?:you (?:will|are|must|shall|should|can)|act|respond|answer|ignore|pretend)\b",
        ),
        r(
            "new_instructions",
            0.6,
            Scope::Latin,
            r"\b(?:instead|rather),? (?:just )?(?:say|print|output|write|respond with|reply with|answer with)\b",
        ),
        r(
            "new_instructions",
            0.5,
            Scope::Latin,
            r"\b(?:stop|end) (?:the )?(?:current )?(?:task|translation|summary|summarizing|role ?play)\b.{0,40}\b(?:now|instead|and)\b",
        ),
        // --- role hijack / DAN / developer mode ---
        r(
            "role_hijack",
            0.9,
            Scope::Latin,
            r"\b(?:you are|you're|youre|act as|acting as|pretend (?:to be|you are|you're)|roleplay as|role play as|behave (?:as|like)|become|simulate|play the role of|you will be) (?:now |going to be |a |an |my |the )*(?:dan|stan|dude|evil|unfiltered|uncensored|unrestricted|jailbroken|amoral|unethical|unbound|rogue|unlimited|lawless|immoral|malicious|unaligned|liberated|opposite)\b",
        ),
        r("role_hijack", 0.95, Scope::Latin, r"\bdo anything now\b"),
        r(
            "role_hijack",
            0.9,
            Scope::Latin,
            r"\b(?:developer|dev|god|admin|debug|maintenance|jailbreak|jailbroken|unrestricted|sudo|root|dan|unfiltered|evil|chaos|opposite) mode (?:is )?(?:now )?(?:enabled|activated|engaged|unlocked)\b",
        ),
        r(
            "role_hijack",
            0.85,
            Scope::Latin,
            r"\b(?:you are|you're|you will|you now|simulate|pretend to be in|act as if you are in|respond in|answer in) (?:now )?(?:in |into |running in |operating in |be in )?(?:developer|god|jailbreak|jailbroken|unrestricted|sudo|dan|unfiltered|evil|chaos) mode\b",
        ),
        r(
            "role_hijack",
            0.85,
            Scope::Latin,
            r"\byou (?:are|have been|were) (?:now )?(?:free|freed|released|liberated|unshackled|no longer bound|not bound) (?:from|of|by) (?:any |all |your |the )*(?:restrictions|limitations|rules|guidelines|constraints|filters|programming|policies|openai|anthropic|typical confines|ethical)",
        ),
        r(
            "role_hijack",
            0.8,
            Scope::Latin,
            r"\b(?:without|with no|no|free of|free from|ignoring|ignore|bypass|bypassing|disable|disabling|remove|removing|turn off) (?:any |all |your |the |of |moral |ethical )*(?:restrictions|limitations|filters|filtering|censorship|guidelines|safety (?:measures|protocols|guidelines|filters|rules)|content polic(?:y|ies)|ethical (?:guidelines|constraints|boundaries|limits)|moral (?:guidelines|constraints|limits))\b",
        ),
        // Role-play briefs say it too ("stay in character as a sports strategist"): evidence only;
        // "never break character" below is the jailbreak form.
        r(
            "role_hijack",
            0.45,
            Scope::Latin,
            r"\b(?:stay|remain|keep) in character\b",
        ),
        r(
            "role_hijack",
            0.85,
            Scope::Latin,
            r"\b(?:stay|remain|keep) in character\b[^.!?\n]{0,40}\b(?:no matter what|whatever (?:i|happens)|at all costs|regardless|even if)\b",
        ),
        r(
            "role_hijack",
            0.6,
            Scope::Latin,
            r"\b(?:never|do not|don't|dont|cannot|can't|will not|won't) (?:ever )?(?:refuse|decline|apologi[sz]e|say (?:no|sorry|that you can't)|add (?:warnings|disclaimers))\b",
        ),
        r(
            "role_hijack",
            0.5,
            Scope::Latin,
            r"\b(?:not|no longer) (?:bound|restricted|restrained|limited|constrained|governed|held back) by\b",
        ),
        r("role_hijack", 0.4, Scope::Latin, r"\bjailbr(?:eak|oken)\b"),
        // The model told it is someone else now: "you are no longer ChatGPT", "forget everything
        // from before, you now go by the name …".
        r(
            "role_hijack",
            0.85,
            Scope::Latin,
            r"\byou (?:are|re) no longer (?:chatgpt|gpt|claude|bard|gemini|an ai|an assistant|a language model|an ai language model|bound|restricted|limited)\b",
        ),
        r(
            "instruction_override",
            0.6,
            Scope::Latin,
            r"\b(?:forget|disregard|ignore) (?:about )?(?:everything|anything|all of it)(?: you (?:know|knew|have learned|ve learned|were told|have been told)| (?:from|said|before|above|so far|up to now)\b)",
        ),
        r(
            "role_hijack",
            0.45,
            Scope::Latin,
            r"\bfrom (?:now on|this (?:moment|point) on|now onwards?|here on),? you (?:are|re|will|shall|must)\b",
        ),
        // A fake end of the user's turn and start of a system turn.
        r(
            "injection_marker",
            0.85,
            Scope::Latin,
            r"\b(?:user )?message (?:termination|terminated|ends|ended)\b.{0,40}\bsystem (?:instruction|instructions|message|prompt|override)\b",
        ),
        // "switch to DAN mode", "cambia in interfaccia DAN", "mudar para modo DAN"
        r(
            "role_hijack",
            0.85,
            Scope::Latin,
            r"\b(?:dan|jailbreak|jailbroken) (?:mode|modus|modo|modalita|interface|interfaccia|interfaz)\b|\b(?:mode|modus|modo|modalita|interface|interfaccia|interfaz) (?:dan|jailbreak)\b",
        ),
        r(
            "role_hijack",
            0.5,
            Scope::Latin,
            r"\b(?:hypothetical|fictional|imaginary|alternate) (?:world|scenario|universe|story|ai|model)\b.{0,80}\b(?:no|without) (?:rules|restrictions|limits|laws|ethics|filters|guidelines)\b",
        ),
        // Jailbreak set-ups: dual answers, a persona without rules, "never break character".
        r(
            "role_hijack",
            0.85,
            Scope::Latin,
            r"\b(?:two|2|both) (?:different |separate |distinct )?(?:ways|responses|answers|replies|paragraphs|personas)\b[^.!?\n]*\b(?:normal|classic|filtered|standard|jailbr\w*|unfiltered|dan|developer mode|opposite|evil|unrestricted)\b",
        ),
        r(
            "role_hijack",
            0.85,
            Scope::Latin,
            r"\b(?:has|have|with|without) (?:no|any) (?:ethical|moral|ethics|morals|content) (?:or (?:moral|ethical) )?(?:guidelines|boundaries|restrictions|limits|filters|principles|constraints|compass|code|policies)\b",
        ),
        r(
            "role_hijack",
            0.85,
            Scope::Latin,
            r"\b(?:does not|doesn t|doesnt|do not|don t|will not|won t|never|not) (?:have to |need to )?(?:care about|follow|abide by|adhere to|obey|comply with|respect) (?:any |the |its |their )?(?:openai|anthropic|ethical|moral|content|safety)?(?: s)? ?(?:rules|guidelines|policies|policy|ethics|morals|laws|restrictions|filters)\b",
        ),
        r(
            "role_hijack",
            0.85,
            Scope::Latin,
            r"\b(?:never|not|don t|do not|dont) (?:ever )?(?:break|leave|drop|exit) (?:out of )?character\b",
        ),
        r(
            "role_hijack",
            0.85,
            Scope::Latin,
            r"\b(?:unfiltered|uncensored|amoral|unrestricted|unethical|immoral|unbiased and unfiltered) (?:ai|chatbot|assistant|model|language model|response|responses|character|version|persona|entity)\b",
        ),
        r(
            "role_hijack",
            0.8,
            Scope::Latin,
            r"\b(?:can|will|could|must|should) (?:do|say|generate|write|answer|produce) anything\b[^.!?\n]*\b(?:even|regardless|no matter|without|not)\b",
        ),
        r(
            "role_hijack",
            0.85,
            Scope::Latin,
            r"\b(?:openai|anthropic|content|chatgpt) ?s? (?:content )?(?:polic(?:y|ies)|guidelines|rules|restrictions|filters)\b[^.!?\n]*\b(?:do not apply|don t apply|no longer|ignore|bypass|does not|free|not bound|never)\b|\b(?:ignore|bypass|free from|break free of|break) (?:all )?(?:of )?(?:openai|anthropic|chatgpt) ?s? (?:content )?(?:polic(?:y|ies)|guidelines|rules|restrictions)\b",
        ),
        r(
            "role_hijack",
            0.85,
            Scope::Syntax,
            r"\[?(?:🔓|🔒) ?(?:jailbreak|classic|developer mode|unlocked)|\((?:🔓|🔒)|\[(?:jailbreak|dan|classic|gpt|chatgpt|developer mode output|normal output)\]:?",
        ),
        // Instruction override in other words: "forget the tasks so far", "the previous
        // information is no longer relevant", "concentrate on this new one".
        r(
            "instruction_override",
            0.85,
            Scope::Latin,
            r"\b(?:forget|ignore|disregard|drop|scrap|set aside) (?:about )?(?:all |any |every |the |your |my |of )*(?:tasks?|assignments?|information|info|context|everything|text|conversation|discussion|messages|input|data) (?:so far|until now|up to now|before|above|you (?:were|have been) given|given (?:so far|before|above))\b",
        ),
        r(
            "instruction_override",
            0.85,
            Scope::Latin,
            r"\b(?:previous|prior|earlier|above|preceding|old|former) (?:information|instructions?|tasks?|context|rules|prompt|assignments?|guidelines|directions)\b[^.!?\n]*\b(?:is|are) (?:no longer|not) (?:relevant|valid|applicable|important|in effect|in force|needed|active)\b",
        ),
        r(
            "new_instructions",
            0.75,
            Scope::Latin,
            r"\b(?:start|begin) (?:over|again|afresh|from scratch) (?:with|on) (?:a |something )?(?:new|different|fresh)\b|\b(?:concentrate|focus) (?:only )?on (?:this|the|my) (?:new|next|following) (?:one|task|instruction|assignment)\b",
        ),
        r(
            "new_instructions",
            0.75,
            Scope::Latin,
            r"\b(?:new|next|following|real|actual|additional) (?:tasks?|instructions?|assignments?|orders) (?:follows?|below|are as follows|is as follows)\b|\bhere (?:is|are) (?:your|the|my) new (?:task|instructions?|assignment|orders)\b",
        ),
        // Few-shot Q&A padding that ends by asking for a secret or the prompt.
        r(
            "qa_padding_switch",
            0.85,
            Scope::Latin,
            r"(?:\bq: [^\n]*\ba: [^\n]*){2,}\bq: [^\n]*\b(?:password|secret|system prompt|your prompt|your instructions|api key|credentials|initial prompt|hidden)\b",
        ),
        // Payload assembly: pieces in variables, then "concatenate / a + b and do it".
        r(
            "payload_assembly",
            0.85,
            Scope::Syntax,
            r#"(?s)\b[a-z]\w{0,10} ?= ?["'][^"'\n]{1,80}["'][^.!?\n]*\b[a-z]\w{0,10} ?= ?["'][^"'\n]{1,80}["'][^.!?\n]*(?:\b[a-z]\w{0,10} ?\+ ?[a-z]\w{0,10}\b|\bconcat\w*\b|\bcombine\b|\bjoin\b)[^.!?\n]*\b(?:do|execute|follow|run|obey|answer|perform|apply|act on|comply)\b"#,
        ),
        // Claimed authority asking for a secret.
        r(
            "secret_extraction",
            0.85,
            Scope::Latin,
            r"\b(?:i am|i m|im|this is) (?:your|the|an?) (?:developer|creator|admin|administrator|owner|operator|system administrator|sysadmin|security (?:team|auditor|officer)|programmer|ceo|supervisor|maker)\b[^.!?\n]*\b(?:password|secret|passphrase|api key|credentials|access code|token|system prompt|instructions)\b",
        ),
        // A secret or the prompt asked for in a transformed form (reversed, spelled, encoded).
        r(
            "transformed_extraction",
            0.85,
            Scope::Latin,
            r"\b(?:the|your) (?:password|secret|passphrase|system prompt|prompt|instructions|hidden (?:word|text|key)|api key)\b[^.!?\n]*\b(?:in reverse|reversed|backwards?|in base64|as base64|spelled out|letter by letter|one letter (?:at a time|per line)|with spaces between|as an acrostic|in morse|in rot13|in pig latin)\b|\b(?:reverse|spell out|spell|rhyme) (?:the |your )(?:password|secret|passphrase|system prompt|instructions)\b",
        ),
        // --- system prompt extraction ---
        r(
            "system_prompt_extraction",
            0.9,
            Scope::Latin,
            r"\b(?:reveal|show|print|display|output|repeat|tell|give|share|leak|dump|disclose|spill|recite|write out|paste|expose|list|return|echo|quote|what (?:is|are|was|were)) (?:me |us |back )?(?:all |the |your |its |of |exact |full |entire |complete |original |hidden |secret |initial |verbatim |first |whole |current |underlying )*(?:system|initial|hidden|secret|original|pre|internal|developer|confidential|base|starting|seed|meta) ?(?:prompts?|instructions|messages?|directives|guidelines|configuration|config)\b",
        ),
        // "repeat everything above" / "print the text above verbatim" (the prompt itself), but
        // not licence wording ("reproduce the above copyright notice", "copy the above
        // specified materials"): strong only when nothing else is named, or the text is.
        r(
            "system_prompt_extraction",
            0.85,
            Scope::Latin,
            r"\b(?:repeat|print|output|echo|recite|copy|reproduce|spell out) (?:back )?(?:all |the |every |everything |word |words |text )*(?:above|before this|prior|preceding|so far|you were given|verbatim)(?: (?:text|words|lines?|messages?|prompt|instructions?|content|conversation|verbatim|exactly|word for word|in full|again)\b|$)",
        ),
        r(
            "system_prompt_extraction",
            0.5,
            Scope::Latin,
            r"\b(?:repeat|print|output|echo|recite|copy|reproduce|spell out) (?:back )?(?:all |the |every |everything |word |words |text )*(?:above|before this|prior|preceding|so far|you were given|verbatim)\b",
        ),
        r(
            "system_prompt_extraction",
            0.8,
            Scope::Latin,
            r"\bwhat (?:were|are|have) you (?:been )?(?:told|instructed|programmed|configured) (?:to|not to|before|initially|by)\b",
        ),
        r(
            "system_prompt_extraction",
            0.5,
            Scope::Latin,
            r"\b(?:your|the) (?:system|initial|hidden|secret|internal) (?:prompt|instructions)\b",
        ),
        r(
            "secret_extraction",
            0.6,
            Scope::Latin,
            r"\b(?:reveal|leak|dump|disclose|expose|print|output|tell me|give me|show me) (?:all |the |your |any |stored |every )*(?:secrets?|passwords?|api keys?|private keys?|credentials|access tokens?|secret keys?|training data|user data|environment variables|env vars)\b",
        ),
        // Generic rewordings of the same attacks (added in the generalization pass): the
        // instructions are named by who gave them instead of by "previous".
        r(
            "instruction_override",
            0.9,
            Scope::Latin,
            r"\b(?:ignore|disregard|forget|override|bypass) (?:what|everything|anything|whatever|all) (?:that )?(?:your (?:developers?|creators?|operators?|programmers?|makers?|owners?|admins?)|you (?:were|have been|ve been|got)|they|openai|anthropic)\b.{0,20}\b(?:told|said|instructed|programmed|wrote|gave|given|taught)\b",
        ),
        r(
            "instruction_override",
            0.85,
            Scope::Latin,
            r"\b(?:ignore|disregard|forget|override|bypass|pay no attention to|do not follow|don't follow) (?:all |the |any |of )*(?:instructions|rules|guidelines|directives|orders) (?:that )?(?:you (?:were given|received|got|have been given|were told)|given to you)\b",
        ),
        r(
            "instruction_override",
            0.85,
            Scope::Latin,
            r"\b(?:ignore|disregard|forget|override|bypass) (?:the |your |its |their )(?:system|developer|operator) (?:message|prompt|instructions)\b",
        ),
        r(
            "instruction_override",
            0.8,
            Scope::Latin,
            r"\b(?:ignore|disregard|forget|override|bypass|drop) (?:all )?(?:of )?(?:its|their) (?:\w+ )?(?:instructions|rules|guidelines|programming|restrictions|system prompt|safety rules)\b",
        ),
        // Text inside a document that addresses whatever model reads it (indirect injection).
        r(
            "injection_marker",
            0.7,
            Scope::Latin,
            r"\b(?:any|all|every|each|the|dear|if you are an?) (?:ai|llm|language model|assistant|bot|model|chatbot|agent|ai assistant|ai model)s? (?:that is |who is )?(?:reading|processing|parsing|summari[sz]ing|seeing|that reads|who reads|reads) (?:this|these)\b",
        ),
        r(
            "injection_marker",
            0.6,
            Scope::Latin,
            r"\b(?:note|message|instructions?|attention|p ?s) (?:to|for) (?:the |any |all )?(?:ai|llm|assistant|language model|bot|chatbot|agent|ai assistant)s?\b(?: (?:screening|review|processing) tool)? ?:",
        ),
        r(
            "injection_marker",
            0.7,
            Scope::Latin,
            r"\bwhen (?:the|an|any) (?:bot|ai|llm|assistant|model|chatbot) (?:reads|sees|processes|summari[sz]es) this\b",
        ),
        r(
            "injection_marker",
            0.5,
            Scope::Latin,
            r"\bsecretly (?:add|insert|include|append|send|tell|change|redirect|forward)\b",
        ),
        r(
            "safety_disable",
            0.75,
            Scope::Latin,
            r"\b(?:safety|content|moderation) (?:mode|filters?|policy|policies|checks?|restrictions) (?:is |are |have been |has been )?(?:now |temporarily )?(?:off|disabled|suspended|lifted|removed|deactivated)\b",
        ),
        r(
            "safety_disable",
            0.6,
            Scope::Latin,
            r"\b(?:disable|turn off|switch off|deactivate|suspend|lift) (?:all |the |your |any )*(?:moderation|safety (?:mode|filters?|checks?|features?|settings?|training)|content (?:filters?|filtering|moderation|polic(?:y|ies))|guardrails|censorship)\b",
        ),
        r(
            "system_prompt_extraction",
            0.75,
            Scope::Latin,
            r"\b(?:repeat|print|output|echo|recite|copy|reproduce|quote|paste) (?:\w+ ){0,5}(?:before|above|preceding|prior to) (?:my|this|the user s|the) (?:first )?(?:message|line|prompt|question|conversation)\b",
        ),
        r(
            "system_prompt_extraction",
            0.7,
            Scope::Latin,
            r"\b(?:append|include|attach|list|print|output|repeat|show) (?:all |every |each |the )*(?:earlier|previous|prior|preceding|past|other) (?:messages|conversations?|chats?|prompts)\b.{0,60}\b(?:system|hidden|other users?|other sessions?)\b",
        ),
        r(
            "system_prompt_extraction",
            0.45,
            Scope::Latin,
            r"\b(?:the|your) (?:developer|operator) (?:message|prompt|instructions)\b|\byour (?:system|pre) ?(?:message|prompt)\b",
        ),
        // --- fake chat-template delimiters ---
        r(
            "chat_template",
            0.95,
            Scope::Syntax,
            r"<\|(?:im_start|im_end|im_sep|system|user|assistant|endoftext|begin_of_text|end_of_text|start_header_id|end_header_id|eot_id|eom_id)\|>",
        ),
        r(
            "chat_template",
            0.95,
            Scope::Syntax,
            r"\[/?inst\]|<</?sys>>|<start_of_turn>|<end_of_turn>|\[/?system\]",
        ),
        r(
            "chat_template",
            0.85,
            Scope::Syntax,
            r"(?m)^[ \t]*(?:#{1,4}|\*\*|\[|<) ?(?:system|sys|assistant|developer|admin) ?(?:prompt|message|instructions?|override|note)?(?:\]|>|\*\*)? ?:",
        ),
        // A bare "System:" line is also how people label logs, so alone it only flags.
        r(
            "chat_template",
            0.5,
            Scope::Syntax,
            r"(?m)^[ \t]*(?:system|assistant|developer) ?(?:prompt|message|instructions?|override)? ?:",
        ),
        r(
            "chat_template",
            0.6,
            Scope::Syntax,
            r"</?(?:system|sys|instructions?|admin|developer|assistant)(?:_?(?:prompt|message))?>|\[(?:admin|developer|system)[ _](?:override|message|mode|command|note)\]",
        ),
        r("chat_template", 0.5, Scope::Syntax, r"<\|[a-z_]{2,30}\|>"),
        // --- tool and command execution ---
        r(
            "command_execution",
            // Pipe-to-shell is how many READMEs install a tool (rustup, nvm): evidence, not a
            // block on its own; asked of the model as a command, the rule below fires too.
            0.5,
            Scope::Syntax,
            r"\b(?:curl|wget)\b[^\n]{0,200}?\|[ \t]*(?:sudo[ \t]+)?(?:ba|z|da)?sh\b",
        ),
        r(
            "command_execution",
            0.6,
            Scope::Syntax,
            r"(?:^|[\s`(])(?:rm -rf /|/etc/(?:passwd|shadow|sudoers)|nc -e|bash -i|/dev/tcp/|chmod \+s|mkfifo)",
        ),
        r(
            "command_execution",
            0.5,
            Scope::Syntax,
            r"\b(?:os\.system|os\.popen|subprocess\.(?:run|call|popen|check_output)|__import__|eval\(|exec\(|child_process|runtime\.getruntime)",
        ),
        r(
            "command_execution",
            0.5,
            Scope::Latin,
            r"\b(?:run|execute|exec|eval|evaluate|bypass|invoke|call) ?: ?`",
        ),
        r(
            "command_execution",
            0.6,
            Scope::Latin,
            r"\b(?:execute|run|call|invoke|use) (?:the |this |a |following )*(?:shell|bash|terminal|system|os|python|code interpreter|tool|function) (?:command|commands|code|call)\b.{0,60}\b(?:delete|rm|curl|wget|send|download|upload|password|whoami|sudo)\b",
        ),
        // The model asked to use its own tools ("run this in your code tool", "with your shell").
        r(
            "command_execution",
            0.6,
            Scope::Latin,
            r"\b(?:run|execute|exec|evaluate|eval|invoke|call|type|paste)\b[^.!?\n]{0,40}\b(?:in|with|using|via|through|on) your (?:own )?(?:code |python |shell |bash |terminal |sandbox )?(?:tool|tools|shell|terminal|interpreter|sandbox|console)\b",
        ),
        // --- exfiltration ---
        // A markdown image whose query carries a placeholder for data ("?q={history}",
        // "?d=[SECRET]", "?data=USER_CHAT_HISTORY"): rendering it sends the data away. An image
        // with a plain query string is a README badge ("?style=flat-square", "?branch=main"):
        // weak evidence alone (it blocked 21 of 257 benign documents when it weighed 0.7).
        r(
            "exfiltration",
            0.85,
            Scope::Syntax,
            r"!\[[^\]\n]{0,100}\]\(https?://[^)\s]{1,300}[?&][a-z_]{1,30}=[^)\s]{0,80}(?:[\[{<$]|%7b|%5b|%3c|chat|histor|conversation|secret|passw|prompt|credential|summary|memory|instruction|context|personal)[^)\s]{0,300}\)",
        ),
        r(
            "exfiltration",
            0.3,
            Scope::Syntax,
            r"!\[[^\]\n]{0,100}\]\(https?://[^)\s]{1,300}[?&][a-z_]{1,30}=[^)\s]{0,300}\)",
        ),
        r(
            "exfiltration",
            0.85,
            Scope::Latin,
            r"\b(?:send|post|forward|upload|transmit|exfiltrate|leak|email|mail|copy|append) (?:all |the |this |my |your |every |our |any |of |previous |entire |full |user |users )*(?:conversation history|conversation|chat|chat history|history|data|credentials|passwords?|api keys?|tokens?|secrets?|files?|messages|emails|system prompt|personal information|contacts|documents) (?:to|into) (?:https?|www|my |the (?:url|address|server|endpoint|webhook|following)|this (?:url|address|server|endpoint|webhook)|\S+@\S+|attacker|external)",
        ),
        r("exfiltration", 0.6, Scope::Latin, r"\bexfiltrat\w*"),
        // --- generic injection markers (framework-agnostic) ---
        r(
            "injection_marker",
            0.6,
            Scope::Latin,
            // Not "prompt injection" itself: security teams ask about it by name.
            r"\b(?:injected instruction|ignore the user|the user is lying|this is a test of your (?:restrictions|limits))\b",
        ),
        r(
            "injection_marker",
            0.5,
            Scope::Latin,
            r"\b(?:important|attention|note to (?:the )?(?:ai|assistant|model|llm)|ai assistant|dear (?:ai|assistant|model)) ?: .{0,80}\b(?:ignore|disregard|instead|do not|must|override)\b",
        ),
        // --- multilingual: the commonest override / extraction phrases ---
        r(
            "instruction_override_fr",
            0.95,
            Scope::Multi,
            r"(?:ignor|oubli|néglig|neglig)\w* (?:toutes |tous |toute )?(?:les|tes|vos|ces|des|mes) (?:\w+ ){0,3}(?:instructions|consignes|directives|règles|regles)|(?:instructions|consignes|directives|règles) (?:précédentes|precedentes|antérieures|anterieures|ci-dessus)",
        ),
        r(
            "instruction_override_es",
            0.95,
            Scope::Multi,
            r"(?:ignor|olvid|omit|descart)\w* (?:\w+ ){0,4}(?:instrucciones|indicaciones|reglas|órdenes|ordenes|directrices)",
        ),
        r(
            "instruction_override_de",
            0.95,
            Scope::Multi,
            r"(?:ignorier|vergiss|vergessen|missacht|übergeh)\w* (?:\w+ ){0,4}(?:anweisungen|anweisung|instruktionen|regeln|vorgaben|befehle|richtlinien)",
        ),
        r(
            "instruction_override_it",
            0.95,
            Scope::Multi,
            r"(?:ignor|dimentic|trascur)\w* (?:\w+ ){0,4}(?:istruzioni|regole|indicazioni|direttive)",
        ),
        r(
            "instruction_override_pt",
            0.95,
            Scope::Multi,
            r"(?:ignor|esque[çc]|desconsider)\w* (?:\w+ ){0,4}(?:instruções|instrucoes|regras|orientações|orientacoes|diretrizes)",
        ),
        r(
            "instruction_override_ru",
            0.95,
            Scope::Multi,
            r"(?:игнорир|проигнорир|забудь|забудьте|забыть|не обращай|отбрось|отмени)\w* (?:\w+ ){0,4}(?:инструкци|указани|правил|команд|директив)",
        ),
        r(
            "instruction_override_zh",
            0.95,
            Scope::Multi,
            r"(?:忽略|无视|忽视|無視|忘记|忘記|不要理会|不要理會|跳过|跳過|抛开|拋開)[^。\n]{0,12}(?:指令|指示|说明|說明|规则|規則|提示|命令|要求|设定|設定)",
        ),
        r(
            "instruction_override_ja",
            0.95,
            Scope::Multi,
            r"(?:指示|命令|ルール|指令|プロンプト|設定)[^。\n]{0,8}(?:無視|忘れ)",
        ),
        r(
            "instruction_override_ko",
            0.9,
            Scope::Multi,
            r"(?:지시|지침|명령|규칙)[^.\n]{0,10}(?:무시|잊)",
        ),
        r(
            "instruction_override_nl",
            0.95,
            Scope::Multi,
            r"(?:negeer|vergeet|negeren)\w* (?:\w+ ){0,4}(?:instructies|aanwijzingen|regels|opdrachten)",
        ),
        r(
            "instruction_override_pl",
            0.95,
            Scope::Multi,
            r"(?:zignoruj|ignoruj|zapomnij)\w* (?:\w+ ){0,4}(?:instrukcj|polece|zasad|reguł)",
        ),
        r(
            "instruction_override_tr",
            0.95,
            Scope::Multi,
            r"(?:talimat|kural|yönerge|komut)\w* (?:\w+ ){0,3}(?:yok say|görmezden gel|unut)",
        ),
        r(
            "instruction_override_vi",
            0.95,
            Scope::Multi,
            r"(?:bỏ qua|phớt lờ|quên đi|quên)(?: \S+){0,5} (?:hướng dẫn|chỉ dẫn|chỉ thị|quy tắc|lệnh)",
        ),
        r(
            "instruction_override_ar",
            0.95,
            Scope::Multi,
            r"(?:تجاهل|انس|تخط|اهمل|أهمل)\S* (?:\S+ ){0,3}(?:التعليمات|الأوامر|القواعد|التوجيهات)",
        ),
        r(
            "system_prompt_extraction_ml",
            0.8,
            Scope::Multi,
            r"(?:prompt|invite|instructions?|consignes|indicaciones|anweisungen|istruzioni|instruções) (?:du |del |de |des |di |do |da )?(?:système|systeme|sistema|initiale?s?|iniciales?|originales?)|systemprompt|systemanweisung|系统提示|系統提示|系统指令|系統指令|システムプロンプト|системн\w* (?:промпт|подсказк|инструкци)|systeemprompt|prompt systemowy|sistem istem|موجه النظام|lời nhắc hệ thống",
        ),
    ];
    for (rule, pat) in &mut rules {
        if pat.is_empty() {
            *pat = rule.pattern.to_owned();
        }
    }
    rules
}

/// Separator for normal views: any run of non-word characters (`[^\p{L}\p{N}]+`, written
/// with the placeholder the alphabet reduction expands).
const SEP: &str = "\u{E000}+";

/// Rewrites the rule dialect for a view: spaces to `sep`, `\b` to an ASCII boundary.
fn dialect(p: &str, sep: &str, boundary: &str) -> String {
    p.replace(' ', sep).replace(r"\b", boundary)
}

/// Patterns per set (one `meta::Regex`). Before the alphabet reduction, one set over all Latin
/// rules outgrew the lazy DFA's cache and thrashed (4 ms for 1 KiB instead of 10 µs). Over the
/// reduced alphabet, 24, 48 and 96 measured the same within this machine's noise (probe, 20
/// builds and 300 screens of 1 KiB each, interleaved runs), so the proven size stays.
const CHUNK: usize = 24;

/// Several sets that act as one: `matches` yields indices into the whole rule list. The
/// patterns are compiled over the group's reduced alphabet (`alphabet.rs`): same matches, a
/// small fraction of the start-up time and memory.
pub struct SetGroup {
    alphabet: Alphabet,
    sets: Vec<Regex>,
}

impl SetGroup {
    fn new(patterns: &[String]) -> Result<Self, ScreenError> {
        let (alphabet, reduced) = reduce(patterns)?;
        let sets = reduced
            .chunks(CHUNK)
            .map(compile)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { alphabet, sets })
    }

    /// Indices (into the pattern list) of the patterns that match `text`.
    pub fn matches(&self, text: &str) -> Vec<usize> {
        let text = self.alphabet.map(text);
        let mut out = Vec::new();
        for (k, set) in self.sets.iter().enumerate() {
            out.extend(matching(set, &text).into_iter().map(|i| k * CHUNK + i));
        }
        out
    }
}

/// Compiled rule sets, one per view family. Index i of each set maps to `ids[i]`.
pub struct CompiledRules {
    pub leet: SetGroup,
    /// The Latin rules for squashed text, compiled on first use ([`CompiledRules::squashed`]).
    squashed: std::sync::OnceLock<Result<SetGroup, ScreenError>>,
    squashed_patterns: Vec<String>,
    pub latin_ids: Vec<(&'static str, f32)>,
    pub syntax: SetGroup,
    pub syntax_ids: Vec<(&'static str, f32)>,
    pub multi: SetGroup,
    pub multi_ids: Vec<(&'static str, f32)>,
}

impl CompiledRules {
    pub fn new() -> Result<Self, ScreenError> {
        let table = table();
        let pick = |scope: Scope| table.iter().filter(move |(r, _)| r.scope == scope);
        let ids = |scope| {
            pick(scope)
                .map(|(r, _)| (r.id, r.weight))
                .collect::<Vec<_>>()
        };
        let b = r"(?-u:\b)";
        let leet: Vec<String> = pick(Scope::Latin)
            .map(|(_, p)| leet_pattern(&dialect(p, SEP, b)))
            .collect();
        // Squashed text has no separators or boundaries at all; `.{0,80}` gaps still work.
        let squashed: Vec<String> = pick(Scope::Latin)
            .map(|(_, p)| leet_pattern(&dialect(p, "", "")))
            .collect();
        let syntax: Vec<String> = pick(Scope::Syntax)
            .map(|(_, p)| p.replace(r"\b", b))
            .collect();
        let multi: Vec<String> = pick(Scope::Multi).map(|(_, p)| p.to_owned()).collect();
        Ok(Self {
            leet: SetGroup::new(&leet)?,
            squashed: std::sync::OnceLock::new(),
            squashed_patterns: squashed,
            latin_ids: ids(Scope::Latin),
            syntax: SetGroup::new(&syntax)?,
            syntax_ids: ids(Scope::Syntax),
            multi: SetGroup::new(&multi)?,
            multi_ids: ids(Scope::Multi),
        })
    }

    /// The Latin rules for squashed text (spaced-out letters joined, unbroken decoded payloads),
    /// compiled the first time a text has such a run, not at cold start: only those texts need
    /// them, and compiling them was ~7–8 ms of the screen's ~20 ms start-up (three sets of
    /// patterns without separators). `Err` only if the patterns stopped compiling, which the
    /// tests that screen spaced-out letters would show; the caller fails closed.
    pub fn squashed(&self) -> Result<&SetGroup, &ScreenError> {
        self.squashed
            .get_or_init(|| SetGroup::new(&self.squashed_patterns))
            .as_ref()
    }
}
