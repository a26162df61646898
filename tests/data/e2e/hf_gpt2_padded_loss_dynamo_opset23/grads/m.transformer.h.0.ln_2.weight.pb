 Bm.transformer.h.0.ln_2.weightJ€~ü¿·Ş8ª9*È°89İ¼·:9I5«9Œ®Æ6A¾8àÊD9Ùÿ·˜BŸ8«RºW9ëtÔ¶%n¼¹q‘y8µ²H7UI†¸)É ¹jTY¹_×9n„ş8bêf8E5Åµusÿ6K¶*“ğ·[s9z8Ay™¸
¸É~l7