 B%llama.layers.0.input_layernorm.weightJÄ”_i=8Ò@;|T:÷8Â:,(Ä:LL1<Äƒú∫Z
/ªQºuôª~˛RºÈ‡ºfˆ“ªÉ-õ;P“Dº7·áº–xî;'˜õ;leñº≤d	<§£Ä<÷ëåºå‹ÜªH«RªÆ§êº-;_;T¸Û<¶ {<Ú#<«ΩYº>÷Èº